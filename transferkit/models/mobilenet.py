"""MobileNet v1.

Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", arXiv:1704.04861. Layer for layer the same network as
``keras.applications.MobileNet`` (so its published ImageNet weights load), with stage names.
"""

from __future__ import annotations

from typing import Any

import keras

from transferkit.models.registry import ModelInfo, register_model
from transferkit.models.weights import PretrainedWeights, register_weights

# Table 1 of the paper: a 3x3/2 stem of 32 filters, then 13 depthwise-separable blocks,
# grouped by output resolution: (stage, pointwise filters, blocks, stride of the first block).
STAGES = (
    ("stage1", 64, 1, 1),
    ("stage2", 128, 2, 2),
    ("stage3", 256, 2, 2),
    ("stage4", 512, 6, 2),
    ("stage5", 1024, 2, 2),
)
STEM_FILTERS = 32

# Variants: width multiplier alpha -> (registry name, the paper's Table 6 parameter count,
# published in millions to one decimal).
VARIANTS = {
    0.25: ("mobilenet_v1_025", 500_000),
    0.50: ("mobilenet_v1_050", 1_300_000),
    0.75: ("mobilenet_v1_075", 2_600_000),
    1.00: ("mobilenet_v1_100", 4_200_000),
}
PAPER = "Howard et al. 2017, MobileNets, arXiv:1704.04861"
_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"


def depthwise_separable_block(
    x: Any, filters: int, stride: int, depth_multiplier: int, name: str
) -> Any:
    """3x3 depthwise conv -> BN -> ReLU6 -> 1x1 pointwise conv -> BN -> ReLU6.

    A stride-2 block pads bottom/right by one and convolves ``valid``, as the TF reference does.
    """
    if stride != 1:
        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    x = keras.layers.DepthwiseConv2D(
        3,
        strides=stride,
        padding="same" if stride == 1 else "valid",
        depth_multiplier=depth_multiplier,
        use_bias=False,
        name=f"{name}_dw",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_pw_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_pw_relu")(x)


def mobilenet_v1(x: Any, alpha: float = 1.0, depth_multiplier: int = 1) -> Any:
    """MobileNet v1 backbone (headless).

    Args:
        x: Preprocessed image tensor in [-1, 1].
        alpha: Width multiplier; every layer has ``int(filters * alpha)`` filters.
        depth_multiplier: Resolution-independent channel multiplier of the depthwise convs.

    Returns:
        The stage5 feature map (stride 32).
    """
    from transferkit.errors import ConfigError

    if alpha <= 0 or depth_multiplier < 1:
        raise ConfigError(
            f"MobileNet needs alpha > 0 and depth_multiplier >= 1, got alpha={alpha}, "
            f"depth_multiplier={depth_multiplier}"
        )
    x = keras.layers.Conv2D(
        int(STEM_FILTERS * alpha), 3, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    for stage, filters, blocks, first_stride in STAGES:
        for b in range(1, blocks + 1):
            x = depthwise_separable_block(
                x,
                int(filters * alpha),
                first_stride if b == 1 else 1,
                depth_multiplier,
                name=f"{stage}_block{b}",
            )
    return x


for _alpha, (_name, _paper_params) in VARIANTS.items():
    register_model(
        ModelInfo(
            name=_name,
            family="mobilenet",
            builder=mobilenet_v1,
            kwargs={"alpha": _alpha},
            input_shape=(224, 224, 3),
            min_size=32,
            preprocessing="tf",
            head={"pooling": "avg", "dropout": 1e-3},
            stages=("stem",) + tuple(s[0] for s in STAGES),
            paper_params=_paper_params,
            paper=PAPER,
        ),
        aliases=("mobilenet",) if _alpha == 1.0 else (),
    )
    _alpha_text = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}[_alpha]
    _file = f"mobilenet_{_alpha_text}_224_tf_no_top.h5"
    register_weights(
        PretrainedWeights(
            model=_name,
            tag="imagenet",
            file_name=_file,
            url=_WEIGHTS_URL + _file,
            file_hash=None,  # Keras publishes no hash for MobileNet files
            input_size=224,
            preprocessing="tf",
            num_classes=None,
            licence="Apache-2.0",
            paper=PAPER,
            bundled=_alpha == 0.25,
            sha256=(
                "dbdb03ee2a22fd895301636cd328b234bb3a9952358f436d82f46b81e0d5b0bf"
                if _alpha == 0.25
                else None
            ),
        )
    )
