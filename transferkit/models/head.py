"""The one shared classification head. It is the only code that knows ``num_classes``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

from transferkit.errors import ConfigError

POOLINGS = ("avg", "max", "flatten")
HEAD_PREFIXES = ("head_", "predictions", "aux")
"""Layer names that belong to a head (the rest of a model is its base)."""
POOL_LAYERS = ("head_pool", "head_flatten")
"""Names of the head's first layer, which turns the base's feature map into one vector."""


def is_head_layer(layer: keras.layers.Layer) -> bool:
    """True for layers of the shared head or an auxiliary classifier."""
    return layer.name.startswith(HEAD_PREFIXES)


def classification_head(
    features: Any,
    num_classes: int,
    pooling: str = "avg",
    hidden_units: Sequence[int] = (),
    dropout: float = 0.0,
    activation: str | None = "softmax",
    hidden_activation: str | Callable[[Any], Any] = "relu",
    output: Callable[[Any, int, str | None], Any] | None = None,
) -> Any:
    """Pools a 4-D feature map and classifies it.

    ``pool -> [Dense -> Dropout] * len(hidden_units) -> Dropout -> predictions``; the
    dropout before ``predictions`` is there only without hidden layers, as in MobileNet, and
    after each hidden layer as in VGG/AlexNet. ``predictions`` computes in float32 so mixed
    precision keeps a float32 softmax.

    Args:
        features: The backbone's output tensor (batch, height, width, channels).
        num_classes: Number of classes.
        pooling: ``"avg"``, ``"max"`` or ``"flatten"``.
        hidden_units: Widths of hidden fully connected layers.
        dropout: Dropout rate; 0 adds no Dropout layer.
        activation: Activation of ``predictions``.
        hidden_activation: Activation of the hidden layers (a name or a registered function,
            e.g. LeNet-5's scaled tanh).
        output: ``None`` for a Dense ``predictions`` layer, or ``output(x, num_classes,
            activation)`` returning the output of a float32 layer it names ``predictions``
            (LeNet-5's fixed RBF units).

    Returns:
        The output tensor of the layer named ``predictions``.
    """
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="head_pool")(features)
    else:
        x = keras.layers.Flatten(name="head_flatten")(features)
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(units, activation=hidden_activation, name=f"head_fc{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"head_fc{i}_dropout")(x)
    if dropout and not hidden_units:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    if output is not None:
        return output(x, num_classes, activation)
    return keras.layers.Dense(
        num_classes, activation=activation, dtype="float32", name="predictions"
    )(x)
