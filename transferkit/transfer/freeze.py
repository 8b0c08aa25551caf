"""Which part of a model trains: the only place that sets ``trainable``.

A model is its *base* (every layer that is not a head layer, see
:func:`transferkit.models.head.is_head_layer`) and its *head*. Stage and block names come from
the stable layer names every builder uses (``stage3_block2_conv1``).

Both modes of transfer learning go through here: *use as-is* (the whole base frozen, its
features computed once, see :mod:`transferkit.transfer.features`; :func:`split_head`) and
*fine-tune* (:func:`freeze` from a stage, block or layer, :func:`unfreeze_schedule` for gradual
unfreezing). :func:`frozen_prefix` cuts a model where training starts, so the frozen part runs
once per image. Runs, the tuner and recipes call these functions rather than setting
``trainable`` themselves.
"""

from __future__ import annotations

import re
from typing import Any

import keras

from transferkit.errors import ConfigError
from transferkit.models.head import POOL_LAYERS, is_head_layer

_BLOCK = re.compile(r"^(stage\d+_block\d+)_")


def base_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers of the base in topological order (input and head layers excluded)."""
    return [
        layer
        for layer in model.layers
        if not is_head_layer(layer) and not isinstance(layer, keras.layers.InputLayer)
    ]


def stage_names(model: keras.Model) -> list[str]:
    """Stage prefixes present in the model, in order (``stem``, ``stage1``, ...)."""
    seen: list[str] = []
    for layer in base_layers(model):
        prefix = layer.name.split("_", 1)[0]
        if (prefix == "stem" or re.fullmatch(r"stage\d+", prefix)) and prefix not in seen:
            seen.append(prefix)
    return seen


def block_names(model: keras.Model) -> list[str]:
    """Block prefixes (``stage2_block1``, ...) in order."""
    seen: list[str] = []
    for layer in base_layers(model):
        match = _BLOCK.match(layer.name)
        if match and match.group(1) not in seen:
            seen.append(match.group(1))
    return seen


def _start_index(layers: list[keras.layers.Layer], trainable_from: str) -> int:
    for i, layer in enumerate(layers):
        if layer.name == trainable_from or layer.name.startswith(trainable_from + "_"):
            return i
    raise ConfigError(f"no stage or layer named {trainable_from!r}")


def freeze(
    model: keras.Model,
    trainable_from: str | None = None,
    train_bn: bool = False,
) -> keras.Model:
    """Freezes the base of ``model`` up to a stage or layer; the head always stays trainable.

    Args:
        model: A model from :func:`transferkit.create_model` (or a backbone).
        trainable_from: ``None`` freezes the whole base; ``"all"`` trains the whole base; a stage
            name (``"stage4"``) or layer name trains the base from there on.
        train_bn: When False (default, the Keras guide's advice) every BatchNormalization layer of
            the base stays frozen, so it runs in inference mode and its moving statistics never
            change, even in an unfrozen part.

    Returns:
        The same model, for chaining. Recompile it before training.
    """
    layers = base_layers(model)
    if trainable_from is None:
        start = len(layers)
    elif trainable_from == "all":
        start = 0
    else:
        try:
            start = _start_index(layers, trainable_from)
        except ConfigError:
            raise ConfigError(
                f"{model.name} has no stage or layer named {trainable_from!r}; stages: "
                f"{', '.join(stage_names(model)) or 'none'} (or any layer name, or 'all')"
            ) from None
    model.trainable = True
    for i, layer in enumerate(layers):
        trainable = i >= start
        if isinstance(layer, keras.layers.BatchNormalization) and not train_bn:
            trainable = False
        layer.trainable = trainable
    for layer in model.layers:
        if is_head_layer(layer):
            layer.trainable = True
    return model


def trainable_from_last_blocks(model: keras.Model, n: int) -> str:
    """The ``trainable_from`` value that unfreezes the last ``n`` blocks of the base."""
    blocks = block_names(model)
    if not blocks:
        raise ConfigError(f"{model.name} has no named blocks; unfreeze by stage or layer name")
    if not 1 <= n <= len(blocks):
        raise ConfigError(f"{model.name} has {len(blocks)} blocks; choose 1 to {len(blocks)}, got {n}")
    return blocks[-n]


# --- Unfreezing ---------------------------------------------------------------------------------


def resolve_unfreeze(
    model: keras.Model, unfreeze_from: str | None = None, unfreeze_last: int | None = None
) -> str:
    """The ``trainable_from`` of :func:`freeze` for phase 2 of a fine-tuning run.

    Args:
        model: The classifier.
        unfreeze_from: ``"all"``, a stage name (``"stage4"``) or a layer name.
        unfreeze_last: Unfreeze the last ``n`` blocks instead (``stage5_block2`` ...).

    Returns:
        ``unfreeze_from``, the first of the last ``unfreeze_last`` blocks, or (neither given) the
        last stage of the base.
    """
    if unfreeze_from is not None and unfreeze_last is not None:
        raise ConfigError("give either unfreeze_from or unfreeze_last, not both")
    if unfreeze_last is not None:
        return trainable_from_last_blocks(model, unfreeze_last)
    if unfreeze_from is not None:
        if unfreeze_from != "all":
            _start_index_or_error(model, unfreeze_from)
        return unfreeze_from
    stages = stage_names(model)
    return stages[-1] if stages else "all"


def _start_index_or_error(model: keras.Model, trainable_from: str) -> int:
    try:
        return _start_index(base_layers(model), trainable_from)
    except ConfigError:
        raise ConfigError(
            f"{model.name} has no stage or layer named {trainable_from!r}; stages: "
            f"{', '.join(stage_names(model)) or 'none'} (or any layer name, or 'all')"
        ) from None


def unfreeze_schedule(
    model: keras.Model, target: str, epochs: int, every: int = 0
) -> list[tuple[str, int]]:
    """Phase 2 as ``[(trainable_from, epochs), ...]``.

    Without gradual unfreezing (``every == 0``) it is one step: ``[(target, epochs)]``. With it,
    training starts with the last stage unfrozen and one more stage (walking towards the input)
    unfreezes every ``every`` epochs until ``target`` is reached; the rest of the epochs train from
    ``target``. Each step is a separate ``fit`` because Keras compiles the set of trainable
    variables into the train step.
    """
    if every < 0:
        raise ConfigError(f"gradual unfreezing takes a number of epochs >= 1, got {every}")
    if not every or epochs <= 0:
        return [(target, epochs)] if epochs > 0 else []
    layers = base_layers(model)
    target_index = 0 if target == "all" else _start_index_or_error(model, target)
    steps: list[str] = []
    for stage in reversed(stage_names(model)):
        if _start_index(layers, stage) <= target_index:
            break
        steps.append(stage)
    steps.append(target)
    plan: list[tuple[str, int]] = []
    left = epochs
    for i, start in enumerate(steps):
        n = left if i == len(steps) - 1 else min(every, left)
        if n > 0:
            plan.append((start, n))
        left -= n
    return plan


# --- Splitting a classifier where training starts -----------------------------------------------

# Layers whose output in training mode is random even with frozen weights.
_STOCHASTIC = (
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
)


def _is_fixed(layer: Any) -> bool:
    """Whether ``layer`` computes the same function in training as in inference, unchanged by
    training: no trainable weights, no randomness, no BatchNormalization using batch statistics,
    no losses it adds (activity regularizers)."""
    for sub in layer._flatten_layers(include_self=True):
        if sub.trainable_weights or isinstance(sub, _STOCHASTIC) or type(sub).__name__.startswith("Random"):
            return False
        if getattr(sub, "activity_regularizer", None) is not None:
            return False
    return True


def frozen_prefix(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """Cuts ``model`` where training starts, for caching what comes before.

    The *prefix* is every layer whose output is fixed (see :func:`_is_fixed`) and computed only
    from fixed layers; its output for an image never changes while the current :func:`freeze`
    setting trains, so it can be computed once per image. The *suffix* maps those tensors (the
    prefix's outputs) to the model's outputs and shares its layers with ``model``, so training
    the suffix trains ``model`` in place, exactly as training ``model`` would.

    Returns:
        ``(prefix, suffix)``, or None when no convolution or dense layer comes before training
        starts, or an input feeds a trained layer directly.
    """
    fixed: dict[int, bool] = {}
    frontier: dict[int, Any] = {}
    inputs = {id(t) for t in model.inputs}

    def visit(tensor: Any) -> bool:
        key = id(tensor)
        if key not in fixed:
            if key in inputs:
                fixed[key] = True
            else:
                op, node_index, _ = tensor._keras_history
                parents = op._inbound_nodes[node_index].input_tensors
                ok = [visit(t) for t in parents]
                fixed[key] = _is_fixed(op) and all(ok)
                if not fixed[key]:
                    frontier.update((id(t), t) for t, good in zip(parents, ok) if good)
        return fixed[key]

    for out in model.outputs:
        if visit(out):
            frontier[id(out)] = out
    cut = [t for t in frontier.values() if id(t) not in inputs]
    if not cut or len(cut) != len(frontier):
        return None
    def one_or_all(tensors: list[Any]) -> Any:
        return tensors[0] if len(tensors) == 1 else tensors

    cut = one_or_all(cut)
    prefix = keras.Model(one_or_all(model.inputs), cut, name=f"{model.name}_frozen_prefix")
    if not any(len(w.shape) >= 2 for w in prefix.weights):
        return None  # no convolution or dense layer before training starts: nothing worth caching
    suffix = keras.Model(cut, one_or_all(model.outputs), name=f"{model.name}_trained_suffix")
    return prefix, suffix


# --- Splitting a classifier at its head ---------------------------------------------------------


def _pool_layer(model: keras.Model) -> keras.layers.Layer:
    for name in POOL_LAYERS:
        try:
            return model.get_layer(name)
        except ValueError:
            continue
    raise ConfigError(
        f"{model.name} has no shared head (no head_pool/head_flatten layer); build it with "
        "transferkit.create_model"
    )


def split_head(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """Cuts a classifier after its (weightless) pooling layer.

    Returns:
        ``(extractor, head)``: ``image -> pooled features`` and ``features -> predictions``. Both
        share their layers with ``model``, so training ``head`` trains ``model``'s head in place:
        the model stays one image-in, probabilities-out model with nothing to stitch afterwards.
    """
    pool = _pool_layer(model)
    extractor = keras.Model(model.input, pool.output, name=f"{model.name}_features")
    chain = [
        layer
        for layer in model.layers
        if is_head_layer(layer) and not layer.name.startswith("aux") and layer is not pool
    ]
    features = keras.Input(shape=tuple(pool.output.shape[1:]), name="features")
    x = features
    for layer in chain:
        x = layer(x)
    return extractor, keras.Model(features, x, name=f"{model.name}_head")
