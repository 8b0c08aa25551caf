"""The shared transfer layer: the only place that decides which part of a model trains.

A model is its *base* (every layer that is not a head layer, see
:func:`transferkit.head.is_head_layer`) and its *head*. Stage and block names come from the
stable layer names every builder uses (``stage3_block2_conv1``).

Both modes of transfer learning go through here: *use as-is* (the whole base frozen, its
features computed once, see :mod:`transferkit.features`; :func:`split_head`) and *fine-tune*
(:func:`freeze` from a stage, block or layer, :func:`unfreeze_schedule` for gradual unfreezing,
per-stage learning-rate multipliers via :func:`make_optimizer`). The CLI, the Python API, recipes
and the tuner call these functions rather than setting ``trainable`` themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import keras

from transferkit.errors import ConfigError, WeightsError
from transferkit.head import HEAD_PREFIXES, is_head_layer

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
    for name in ("head_pool", "head_flatten"):
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


# --- Per-stage learning-rate multipliers --------------------------------------------------------


def parse_lr_mult(text: str | float | Mapping[str, float] | None) -> dict[str, float] | None:
    """``0.1`` (the whole base) or ``"stage4=0.1,stage5=0.3"`` (per stage or layer prefix; ``base``
    sets the default of the other base layers) as a ``{prefix: multiplier}`` dict."""
    if text is None or text == "":
        return None
    if isinstance(text, Mapping):
        rules = {str(k): float(v) for k, v in text.items()}
    elif isinstance(text, (int, float)):
        rules = {"base": float(text)}
    else:
        rules = {}
        for item in str(text).split(","):
            key, sep, value = item.strip().partition("=")
            if not sep:
                key, value = "base", key
            try:
                rules[key.strip()] = float(value)
            except ValueError:
                raise ConfigError(
                    f"--lr-mult takes a number (e.g. 0.1) or stage=number pairs (e.g. "
                    f"'stage4=0.1,stage5=0.3'), got {text!r}"
                ) from None
    for key, value in rules.items():
        if value < 0:
            raise ConfigError(f"learning-rate multipliers must be >= 0, got {key}={value}")
    return rules


def lr_multiplier(path: str, rules: Mapping[str, float]) -> float:
    """The multiplier of the variable at ``path`` (``.../stage4_block1_pw/kernel``).

    The longest rule that prefixes one of the path's layer names wins; head variables get 1 (or
    the ``head`` rule); other base variables get the ``base`` rule (default 1).
    """
    names = path.split("/")[:-1] or [path]
    best: tuple[int, float] | None = None
    for key, value in rules.items():
        if key in ("base", "head"):
            continue
        if any(n == key or n.startswith(key + "_") for n in names):
            if best is None or len(key) > best[0]:
                best = (len(key), value)
    if best is not None:
        return best[1]
    if any(n.startswith(HEAD_PREFIXES) for n in names):
        return float(rules.get("head", 1.0))
    return float(rules.get("base", 1.0))


class LRMultipliers:
    """Mixin for a Keras optimizer: scales the learning rate of each variable by a multiplier.

    The multiplier is applied in ``update_step``, which Keras calls per variable with the
    learning rate (also per replica under ``tf.distribute``), so it works with ``model.fit`` and
    distribution strategies; the rules are part of ``get_config``, so a compiled ``.keras`` file
    reloads with them. Keras has no per-variable learning rate, hence this mixin.
    """

    def __init__(self, *args: Any, lr_multipliers: Mapping[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self._multipliers: list[float] = []

    def build(self, variables: Any) -> None:
        self._multipliers = [lr_multiplier(v.path, self.lr_multipliers) for v in variables]
        super().build(variables)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> Any:
        scale = self._multipliers[self._get_variable_index(variable)]
        if scale != 1.0:
            learning_rate = learning_rate * scale
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "lr_multipliers": dict(self.lr_multipliers)}


@keras.saving.register_keras_serializable(package="transferkit")
class MultipliedAdam(LRMultipliers, keras.optimizers.Adam):
    """Adam with per-stage learning-rate multipliers (see :class:`LRMultipliers`)."""


@keras.saving.register_keras_serializable(package="transferkit")
class MultipliedAdamW(LRMultipliers, keras.optimizers.AdamW):
    """AdamW with per-stage learning-rate multipliers (see :class:`LRMultipliers`)."""


@keras.saving.register_keras_serializable(package="transferkit")
class MultipliedSGD(LRMultipliers, keras.optimizers.SGD):
    """SGD with per-stage learning-rate multipliers (see :class:`LRMultipliers`)."""


@keras.saving.register_keras_serializable(package="transferkit")
class MultipliedRMSprop(LRMultipliers, keras.optimizers.RMSprop):
    """RMSprop with per-stage learning-rate multipliers (see :class:`LRMultipliers`)."""


OPTIMIZERS = {
    "adam": (keras.optimizers.Adam, MultipliedAdam),
    "adamw": (keras.optimizers.AdamW, MultipliedAdamW),
    "sgd": (keras.optimizers.SGD, MultipliedSGD),
    "rmsprop": (keras.optimizers.RMSprop, MultipliedRMSprop),
}


def make_optimizer(
    name: str = "adam", learning_rate: float = 1e-3, lr_mult: Any = None, **kwargs: Any
) -> keras.optimizers.Optimizer:
    """A Keras optimizer; with learning-rate multipliers (see :func:`parse_lr_mult`) its
    ``Multiplied*`` form."""
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    plain, multiplied = OPTIMIZERS[key]
    rules = parse_lr_mult(lr_mult)
    if key == "sgd":
        kwargs.setdefault("momentum", 0.9)
    if rules is None:
        return plain(learning_rate=learning_rate, **kwargs)
    return multiplied(learning_rate=learning_rate, lr_multipliers=rules, **kwargs)


# --- Input channels -----------------------------------------------------------------------------


def first_conv(model: keras.Model) -> keras.layers.Layer:
    """The first base layer with a 4-D kernel (the convolution that sees the image)."""
    for layer in base_layers(model):
        kernel = [w for w in layer.weights if len(w.shape) == 4]
        if kernel:
            return layer
    raise ConfigError(f"{model.name} has no convolution to adapt to other input channels")


def adapt_input_channels(source: keras.Model, target: keras.Model) -> None:
    """Copies the weights of ``source`` (3-channel RGB) into ``target`` (1-channel), by layer name.

    The first convolution's kernel is summed over its RGB input axis: a grey image ``g`` fed as
    ``(g, g, g)`` gives ``sum_c K_c * g``, so the 1-channel network computes what the RGB network
    computes on the grey image repeated three times. That holds for the ``tf``, ``unit`` and
    ``none`` preprocessing modes, which treat every channel alike; :func:`build_model` refuses
    one channel with the per-channel ``torch`` and ``caffe`` modes. Other per-channel weights
    before that convolution (a stem normalization) are averaged.
    """
    conv = first_conv(source).name
    seen_conv = False
    src = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        other = src.get(layer.name)
        if other is None:
            raise WeightsError(f"{source.name} has no layer {layer.name!r} to copy into {target.name}")
        values = []
        for mine, theirs in zip(layer.weights, other.get_weights()):
            if tuple(mine.shape) != theirs.shape:
                if layer.name == conv and len(theirs.shape) == 4:
                    theirs = theirs.sum(axis=2, keepdims=True)
                elif not seen_conv and theirs.shape[-1:] == (3,):
                    theirs = theirs.mean(axis=-1, keepdims=True)
            if tuple(mine.shape) != theirs.shape:
                raise WeightsError(
                    f"layer {layer.name!r} has weights {theirs.shape} in {source.name} but "
                    f"{tuple(mine.shape)} in {target.name}"
                )
            values.append(theirs)
        layer.set_weights(values)
        seen_conv = seen_conv or layer.name == conv


# --- Mixed precision ----------------------------------------------------------------------------

PRECISIONS = ("mixed_float16", "mixed_bfloat16")


def check_precision(policy: str | None) -> str | None:
    """``policy`` if it names a mixed-precision policy, None for float32."""
    if policy in (None, "", "float32", "none"):
        return None
    if policy not in PRECISIONS:
        raise ConfigError(f"mixed precision must be one of {', '.join(PRECISIONS)}, got {policy!r}")
    return policy


@contextmanager
def precision(policy: str | None) -> Iterator[None]:
    """Builds and trains under a Keras mixed-precision policy, restoring the previous one after.

    The shared head's ``predictions`` layer is float32, so the softmax and the loss stay float32;
    under ``mixed_float16`` ``compile`` wraps the optimizer in a ``LossScaleOptimizer``.
    """
    policy = check_precision(policy)
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# --- Building the model to transfer -------------------------------------------------------------


def build_model(
    base: str,
    num_classes: int,
    weights: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    **head: Any,
) -> keras.Model:
    """A classifier with a new head on a base from random init, a pretrained tag or a file.

    A file is first loaded into the base alone (a ``.keras`` by layer name, so the file's own
    head is ignored; a weights file by order); a weights file of a whole classifier with
    ``num_classes`` outputs is accepted too. ``channels=1`` adapts 3-channel weights with
    :func:`adapt_input_channels`.

    Args:
        base: Registry name.
        num_classes: Outputs of the new ``predictions`` layer.
        weights: None, a tag (``"imagenet"``) or a path.
        image_size: Square input side; the variant's default when None.
        channels: 3 (RGB) or 1 (grey); the variant's default when None.
        **head: ``pooling``, ``hidden_units``, ``dropout`` of the shared head.
    """
    from transferkit import registry
    from transferkit import weights as weights_lib

    info = registry.get_model_info(base)
    size = image_size or info.input_shape[0]
    channels = channels or info.input_shape[2]
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    if channels == 1 and info.input_shape[2] == 3 and weights is not None:
        rgb = build_model(base, num_classes, weights, size, 3, **head)
        mode = rgb.get_layer("preprocess").mode
        if mode in ("torch", "caffe"):
            raise ConfigError(
                f"{base} weights expect per-channel {mode!r} preprocessing, which has no grey form; "
                "train on 3-channel images (grey images are read as RGB by default)"
            )
        grey = registry.create_model(base, num_classes, None, (size, size, 1), **head)
        set_preprocessing(grey, rgb.get_layer("preprocess").mode)
        adapt_input_channels(rgb, grey)
        return grey
    shape = (size, size, channels)
    if weights is None or weights_lib.is_tag(weights):
        return registry.create_model(base, num_classes, weights, shape, **head)
    backbone_error: WeightsError | None = None
    try:
        backbone = registry.create_backbone(base, weights, shape)
    except WeightsError as err:
        backbone_error = err
    if backbone_error is None:
        model = registry.create_model(base, num_classes, None, shape, **head)
        for layer in backbone.layers:
            if layer.weights:
                model.get_layer(layer.name).set_weights(layer.get_weights())
        return model
    try:
        return registry.create_model(base, num_classes, weights, shape, **head)
    except WeightsError:
        raise backbone_error from None


def set_preprocessing(model: keras.Model, mode: str) -> None:
    """Sets the mode of the model's ``preprocess`` layer (before the model is first run)."""
    from transferkit.layers import PREPROCESSING_MODES

    if mode not in PREPROCESSING_MODES:
        raise ConfigError(f"unknown preprocessing mode {mode!r}")
    model.get_layer("preprocess").mode = mode
