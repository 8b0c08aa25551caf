"""Small layer groups every family uses; the blocks themselves live in their family's module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

BN_EPSILON = 1e-3  # Keras' default, which the published Keras weights were trained with


def conv_bn_act(
    x: Any,
    filters: int,
    kernel: int | tuple[int, int],
    strides: int = 1,
    name: str = "conv",
    activation: str | None = "relu",
    padding: str = "same",
    use_bias: bool = False,
    bn_epsilon: float = BN_EPSILON,
) -> Any:
    """``Conv2D -> BatchNormalization -> activation``, named ``{name}``, ``{name}_bn``, ``{name}_{act}``."""
    x = keras.layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, use_bias=use_bias, name=name
    )(x)
    x = keras.layers.BatchNormalization(epsilon=bn_epsilon, name=f"{name}_bn")(x)
    if activation:
        x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def norm_act(x: Any, ops: Sequence[str], name: str, bn_epsilon: float = BN_EPSILON) -> Any:
    """Applies ``"bn"`` and ``"relu"`` in the order given, named ``{name}_bn`` and ``{name}_relu``.

    The order is data so that one residual block can place them as any of the Identity Mappings
    Fig. 4 orders, pre- or post-activation; an empty ``ops`` adds no layer.
    """
    for op in ops:
        if op == "bn":
            x = keras.layers.BatchNormalization(epsilon=bn_epsilon, name=f"{name}_bn")(x)
        else:
            x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def padded_conv(
    x: Any, filters: int, kernel: int, stride: int, name: str, use_bias: bool = False
) -> Any:
    """A convolution padded as the Torch/Caffe references pad it: symmetric ``kernel // 2``
    (layer ``{name}_pad``) when strided, ``same`` otherwise."""
    if kernel > 1 and stride > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, use_bias=use_bias, name=name
    )(x)


def check_min_size(x: Any, minimum: int, model: str) -> None:
    """Raises ConfigError when the spatial input is smaller than the network can downsample."""
    from transferkit.errors import ConfigError

    h, w = x.shape[1], x.shape[2]
    if h is not None and w is not None and min(h, w) < minimum:
        raise ConfigError(
            f"{model} needs inputs of at least {minimum}x{minimum} pixels, got {h}x{w}; "
            "use a larger image size"
        )
