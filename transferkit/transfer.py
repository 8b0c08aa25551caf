"""The shared transfer layer: the only place that decides which part of a model trains.

A model is its *base* (every layer that is not a head layer, see
:func:`transferkit.head.is_head_layer`) and its *head*. Stage and block names come from the
stable layer names every builder uses (``stage3_block2_conv1``).
"""

from __future__ import annotations

import re

import keras

from transferkit.errors import ConfigError
from transferkit.head import is_head_layer

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
