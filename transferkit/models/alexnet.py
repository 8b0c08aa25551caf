"""AlexNet.

Krizhevsky, Sutskever and Hinton 2012, "ImageNet Classification with Deep Convolutional Neural
Networks", NeurIPS 2012, section 3 and Fig. 2.

Five convolutions with ReLU; local response normalisation (section 3.3) and overlapping 3x3/2
max pooling (section 3.4) after conv1 and conv2, pooling after conv5. ``groups=2`` (default)
keeps the paper's two GPU towers: conv2, conv4 and conv5 see only the maps of their own tower,
conv3 sees both. The FC 4096-4096 layers with dropout 0.5 are the shared head's defaults.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras

from transferkit.errors import ConfigError
from transferkit.models.layers import LocalResponseNormalization
from transferkit.models.common import check_min_size
from transferkit.models.registry import ModelInfo, register_model

PAPER = (
    "Krizhevsky et al. 2012, ImageNet Classification with Deep Convolutional Neural Networks, "
    "NeurIPS 2012"
)
PAPER_PARAMS = 60_000_000  # section 1: "60 million parameters"
INPUT_SHAPE = (227, 227, 3)  # 224 in the paper's text; 227 makes conv1's 55x55 maps exact
MIN_SIZE = 67  # smallest input that leaves conv5's pool a 1x1 map


class ConvSpec(NamedTuple):
    """One row of the spec table (Fig. 2)."""

    filters: int
    kernel: int
    stride: int
    padding: str
    grouped: bool  # connected only within its tower when groups > 1
    lrn: bool
    pool: bool
    bias: float  # section 5: biases of conv2, conv4, conv5 start at 1, the others at 0


STAGES = (
    ("stage1", ConvSpec(96, 11, 4, "valid", False, True, True, 0.0)),
    ("stage2", ConvSpec(256, 5, 1, "same", True, True, True, 1.0)),
    ("stage3", ConvSpec(384, 3, 1, "same", False, False, False, 0.0)),
    ("stage4", ConvSpec(384, 3, 1, "same", True, False, False, 1.0)),
    ("stage5", ConvSpec(256, 3, 1, "same", True, False, True, 1.0)),
)
LRN = {"size": 5, "k": 2.0, "alpha": 1e-4, "beta": 0.75}  # section 3.3


def alexnet_block(x: Any, spec: ConvSpec, groups: int, name: str) -> Any:
    """Conv + ReLU, then LRN and 3x3/2 max pooling where the spec says so.

    Layers: ``{name}_conv``, ``{name}_lrn``, ``{name}_pool``.
    """
    x = keras.layers.Conv2D(
        spec.filters,
        spec.kernel,
        strides=spec.stride,
        padding=spec.padding,
        groups=groups if spec.grouped else 1,
        activation="relu",
        bias_initializer=keras.initializers.Constant(spec.bias),
        name=f"{name}_conv",
    )(x)
    if spec.lrn:
        x = LocalResponseNormalization(**LRN, name=f"{name}_lrn")(x)
    if spec.pool:
        x = keras.layers.MaxPooling2D(3, strides=2, name=f"{name}_pool")(x)
    return x


def alexnet(x: Any, groups: int = 2) -> Any:
    """AlexNet backbone (headless).

    Args:
        x: Preprocessed image tensor.
        groups: Towers of conv2, conv4 and conv5: 2 as in the paper, 1 for the single-tower
            form (more parameters); any divisor of their channel counts is accepted.

    Returns:
        The pooled conv5 feature map (6x6x256 on a 227x227 input).

    Raises:
        ConfigError: inputs smaller than 67x67, or ``groups`` that does not divide the channels.
    """
    check_min_size(x, MIN_SIZE, "AlexNet")
    grouped, c_in = set(), x.shape[-1]
    for _, spec in STAGES:
        if spec.grouped:
            grouped |= {c_in, spec.filters}
        c_in = spec.filters
    if not isinstance(groups, int) or groups < 1 or any(c % groups for c in grouped):
        raise ConfigError(
            f"AlexNet groups must be a positive integer dividing {sorted(grouped)} "
            f"(1 or 2 as in the paper), got {groups!r}"
        )
    for name, spec in STAGES:
        x = alexnet_block(x, spec, groups, name)
    return x


register_model(
    ModelInfo(
        name="alexnet",
        family="alexnet",
        builder=alexnet,
        kwargs={"groups": 2},
        input_shape=INPUT_SHAPE,
        min_size=MIN_SIZE,
        preprocessing="tf",  # no published Keras weights
        head={"pooling": "flatten", "hidden_units": (4096, 4096), "dropout": 0.5},
        stages=tuple(name for name, _ in STAGES),
        paper_params=PAPER_PARAMS,
        paper=PAPER,
    )
)
