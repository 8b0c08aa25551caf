"""EfficientNet B0-B7.

Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019, arXiv:1905.11946. Layer for layer the same network as
``keras.applications.EfficientNetB0`` ... ``B7`` (so their published ImageNet weights load by
order), with stage names: ``stem`` (the paper's stage 1, Conv3x3), ``stage1`` ... ``stage7`` (the
seven MBConv stages, Keras' ``block1`` ... ``block7``), ``stage8`` (the 1x1 conv to 1280 channels;
pooling, dropout and the classifier are the shared head).

Input normalisation is part of the stem, as in Keras: ``Rescaling(1/255) -> normalisation ->
Rescaling(1/sqrt(std))``. The normalisation layer carries weights (mean, variance, count) because
the published files store them -- with the ImageNet *std* as "variance" (tensorflow issue 49930),
hence the second Rescaling. Ours starts from those stored values, so every model, pretrained or
not, standardises its input with the ImageNet mean and std; the registry's Preprocess mode is
therefore ``none``.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from keras import ops

from transferkit.errors import ConfigError
from transferkit.models.registry import ModelInfo, register_model
from transferkit.models.weights import PretrainedWeights, register_weights

# Table 1 of the paper (EfficientNet-B0), one row per MBConv stage:
# (expand ratio, kernel, stride of the first block, output channels, repeats).
BLOCKS = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_FILTERS = 32
TOP_FILTERS = 1280
SE_RATIO = 0.25

# Compound scaling (section 3.3; coefficients as published with the reference code):
# variant -> (width, depth, resolution, dropout, the paper's Table 2 parameter count).
VARIANTS = {
    "b0": (1.0, 1.0, 224, 0.2, 5_300_000),
    "b1": (1.0, 1.1, 240, 0.2, 7_800_000),
    "b2": (1.1, 1.2, 260, 0.3, 9_200_000),
    "b3": (1.2, 1.4, 300, 0.3, 12_000_000),
    "b4": (1.4, 1.8, 380, 0.4, 19_000_000),
    "b5": (1.6, 2.2, 456, 0.4, 30_000_000),
    "b6": (1.8, 2.6, 528, 0.5, 43_000_000),
    "b7": (2.0, 3.1, 600, 0.5, 66_000_000),
}
DROP_CONNECT_RATE = 0.2

# What the published files store in the stem Normalization layer (mean, "variance" = std).
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)

# Keras' initialisers (the reference TF implementation's), for faithful training from scratch.
CONV_KERNEL_INITIALIZER = keras.initializers.VarianceScaling(
    scale=2.0, mode="fan_out", distribution="truncated_normal"
)

PAPER = "Tan & Le 2019, EfficientNet, ICML 2019, arXiv:1905.11946"
_WEIGHTS_URL = "https://storage.googleapis.com/keras-applications/"
# keras.applications.efficientnet.WEIGHTS_HASHES, the no-top (second) entries.
_NOTOP_HASHES = {
    "b0": "50bc09e76180e00e4465e1a485ddc09d",
    "b1": "74c4e6b3e1f6a1eea24c589628592432",
    "b2": "111f8e2ac8aa800a7a99e3239f7bfb39",
    "b3": "af6d107764bb5b1abb91932881670226",
    "b4": "ebc24e6d6c33eaebbd558eafbeedf1ba",
    "b5": "38879255a25d3c92d5e44e04ae6cec6f",
    "b6": "9ecce42647a20130c1f39a5d4cb75743",
    "b7": "cbcfe4450ddf6f3ad90b1b398090fe4a",
}


@keras.saving.register_keras_serializable(package="transferkit")
class StemNormalization(keras.layers.Layer):
    """Per-channel ``(x - mean) / sqrt(variance)`` whose statistics are (non-trainable) weights.

    The weights are laid out as ``keras.layers.Normalization``'s (mean, variance, count), so the
    published files load into it by order. Written by hand because Keras' Normalization caches
    its statistics as constants when built: values assigned later (``set_weights``, copying
    weights, ``from_config`` + ``set_weights``) never reach its output, and it cannot start from
    given statistics while keeping them as weights. This layer reads its variables on every call.

    Args:
        mean: Initial per-channel mean.
        variance: Initial per-channel "variance" (the published files store the std here).
    """

    def __init__(
        self,
        mean: tuple[float, ...] = IMAGENET_MEAN_RGB,
        variance: tuple[float, ...] = IMAGENET_STDDEV_RGB,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.initial_mean = tuple(float(m) for m in mean)
        self.initial_variance = tuple(float(v) for v in variance)

    def build(self, input_shape: Any) -> None:
        channels = input_shape[-1]
        if channels != len(self.initial_mean):
            raise ConfigError(
                f"{self.name} normalises {len(self.initial_mean)} channels, got {channels}"
            )
        self.mean = self.add_weight(
            name="mean",
            shape=(channels,),
            initializer=keras.initializers.Constant(self.initial_mean),
            trainable=False,
        )
        self.variance = self.add_weight(
            name="variance",
            shape=(channels,),
            initializer=keras.initializers.Constant(self.initial_variance),
            trainable=False,
        )
        self.count = self.add_weight(
            name="count", shape=(), dtype="int64", initializer="zeros", trainable=False
        )

    def call(self, inputs: Any) -> Any:
        mean = ops.cast(self.mean, self.compute_dtype)
        variance = ops.cast(self.variance, self.compute_dtype)
        std = ops.maximum(ops.sqrt(variance), keras.config.epsilon())
        return (inputs - mean) / std

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "mean": list(self.initial_mean),
            "variance": list(self.initial_variance),
        }


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scales a channel count by ``width``, rounded to a multiple of ``divisor`` (never -10%)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Scales a stage's number of blocks by ``depth``, rounded up."""
    return int(math.ceil(depth * repeats))


def correct_pad(x: Any, kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """TF-style ``same`` padding of a stride-2 conv made explicit (one less on top/left for even
    sizes), as Keras' ``imagenet_utils.correct_pad`` does; not part of the public Keras API."""
    adjust = [1 if d is None else 1 - d % 2 for d in (x.shape[1], x.shape[2])]
    half = kernel // 2
    return ((half - adjust[0], half), (half - adjust[1], half))


def mbconv_block(
    x: Any,
    filters_in: int,
    filters_out: int,
    kernel: int,
    stride: int,
    expand_ratio: int,
    se_ratio: float,
    drop_rate: float,
    name: str,
    activation: str = "swish",
) -> Any:
    """Mobile inverted bottleneck (MBConv) with squeeze-and-excitation and stochastic depth.

    ``[1x1 expand -> BN -> act] -> kxk depthwise -> BN -> act -> [SE] -> 1x1 project -> BN``, plus
    an identity shortcut (behind per-sample dropout, "drop connect") when shape is kept.

    Args:
        x: Input feature map with ``filters_in`` channels.
        filters_in: Input channels (also the base of the SE width, as in the reference code).
        filters_out: Output channels.
        kernel: Depthwise kernel size.
        stride: Depthwise stride (1 or 2).
        expand_ratio: Expansion of the inverted bottleneck; 1 skips the expand conv.
        se_ratio: SE bottleneck width relative to ``filters_in``; 0 disables SE.
        drop_rate: Probability of dropping the residual branch of a sample in training.
        name: Layer name prefix, e.g. ``stage2_block1``.
        activation: Activation of the block (swish).

    Returns:
        The block output with ``filters_out`` channels.
    """
    inputs = x
    filters = filters_in * expand_ratio
    if expand_ratio != 1:
        x = keras.layers.Conv2D(
            filters,
            1,
            padding="same",
            use_bias=False,
            kernel_initializer=CONV_KERNEL_INITIALIZER,
            name=f"{name}_expand_conv",
        )(x)
        x = keras.layers.BatchNormalization(name=f"{name}_expand_bn")(x)
        x = keras.layers.Activation(activation, name=f"{name}_expand_activation")(x)
    if stride == 2:
        x = keras.layers.ZeroPadding2D(correct_pad(x, kernel), name=f"{name}_dwconv_pad")(x)
    x = keras.layers.DepthwiseConv2D(
        kernel,
        strides=stride,
        padding="same" if stride == 1 else "valid",
        use_bias=False,
        depthwise_initializer=CONV_KERNEL_INITIALIZER,
        name=f"{name}_dwconv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_dwconv_bn")(x)
    x = keras.layers.Activation(activation, name=f"{name}_dwconv_activation")(x)
    if se_ratio > 0:
        se = keras.layers.GlobalAveragePooling2D(keepdims=False, name=f"{name}_se_squeeze")(x)
        se = keras.layers.Reshape((1, 1, filters), name=f"{name}_se_reshape")(se)
        se = keras.layers.Conv2D(
            max(1, int(filters_in * se_ratio)),
            1,
            activation=activation,
            kernel_initializer=CONV_KERNEL_INITIALIZER,
            name=f"{name}_se_reduce",
        )(se)
        se = keras.layers.Conv2D(
            filters,
            1,
            activation="sigmoid",
            kernel_initializer=CONV_KERNEL_INITIALIZER,
            name=f"{name}_se_expand",
        )(se)
        x = keras.layers.Multiply(name=f"{name}_se_excite")([x, se])
    x = keras.layers.Conv2D(
        filters_out,
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        name=f"{name}_project_conv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # One mask value per sample: the whole residual branch is dropped (stochastic depth).
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def efficientnet(
    x: Any,
    width: float = 1.0,
    depth: float = 1.0,
    drop_connect_rate: float = DROP_CONNECT_RATE,
    se_ratio: float = SE_RATIO,
    activation: str = "swish",
) -> Any:
    """EfficientNet backbone (headless), B0's table scaled by ``width`` and ``depth``.

    Args:
        x: Raw 0-255 RGB image tensor (the stem normalises it; Preprocess mode ``none``).
        width: Width coefficient; channels are ``round_filters(c * width)``.
        depth: Depth coefficient; stage repeats are ``ceil(n * depth)``.
        drop_connect_rate: Stochastic-depth rate of the last block; block ``b`` of ``B`` drops
            with ``rate * b / B``.
        se_ratio: Squeeze-and-excitation ratio; 0 disables SE.
        activation: Activation everywhere (swish).

    Returns:
        The stage8 feature map (stride 32, ``round_filters(1280)`` channels).

    Raises:
        ConfigError: non-positive coefficients or rates out of range.
    """
    if width <= 0 or depth <= 0:
        raise ConfigError(
            f"EfficientNet needs width > 0 and depth > 0, got width={width}, depth={depth}"
        )
    if not 0.0 <= drop_connect_rate < 1.0:
        raise ConfigError(f"drop_connect_rate must be in [0, 1), got {drop_connect_rate}")
    if not 0.0 <= se_ratio <= 1.0:
        raise ConfigError(f"se_ratio must be in [0, 1] (0 disables SE), got {se_ratio}")
    if x.shape[-1] != 3:
        raise ConfigError(
            f"EfficientNet's stem normalises RGB with ImageNet statistics; it takes 3 channels, "
            f"got {x.shape[-1]}"
        )

    x = keras.layers.Rescaling(1.0 / 255.0, name="stem_rescaling")(x)
    x = StemNormalization(name="stem_normalization")(x)
    x = keras.layers.Rescaling(
        [1.0 / math.sqrt(s) for s in IMAGENET_STDDEV_RGB], name="stem_rescaling_std"
    )(x)
    x = keras.layers.ZeroPadding2D(correct_pad(x, 3), name="stem_conv_pad")(x)
    x = keras.layers.Conv2D(
        round_filters(STEM_FILTERS, width),
        3,
        strides=2,
        padding="valid",
        use_bias=False,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        name="stem_conv",
    )(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation(activation, name="stem_activation")(x)

    total = sum(round_repeats(row[4], depth) for row in BLOCKS)
    index = 0
    filters_in = round_filters(STEM_FILTERS, width)
    for stage, (expand, kernel, stride, channels, repeats) in enumerate(BLOCKS, start=1):
        filters_out = round_filters(channels, width)
        for b in range(round_repeats(repeats, depth)):
            x = mbconv_block(
                x,
                filters_in,
                filters_out,
                kernel,
                stride if b == 0 else 1,
                expand,
                se_ratio,
                drop_connect_rate * index / total,
                name=f"stage{stage}_block{b + 1}",
                activation=activation,
            )
            filters_in = filters_out
            index += 1

    top = f"stage{len(BLOCKS) + 1}"
    x = keras.layers.Conv2D(
        round_filters(TOP_FILTERS, width),
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        name=f"{top}_conv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{top}_bn")(x)
    return keras.layers.Activation(activation, name=f"{top}_activation")(x)


for _variant, (_width, _depth, _size, _dropout, _paper_params) in VARIANTS.items():
    _name = f"efficientnet_{_variant}"
    register_model(
        ModelInfo(
            name=_name,
            family="efficientnet",
            builder=efficientnet,
            kwargs={"width": _width, "depth": _depth},
            input_shape=(_size, _size, 3),
            min_size=32,
            preprocessing="none",
            head={"pooling": "avg", "dropout": _dropout},
            stages=("stem",) + tuple(f"stage{i}" for i in range(1, len(BLOCKS) + 2)),
            paper_params=_paper_params,
            paper=PAPER,
        ),
        aliases=(f"efficientnet{_variant}",),
    )
    _file = f"efficientnet{_variant}_notop.h5"
    register_weights(
        PretrainedWeights(
            model=_name,
            tag="imagenet",
            file_name=_file,
            url=_WEIGHTS_URL + _file,
            file_hash=_NOTOP_HASHES[_variant],
            input_size=_size,
            preprocessing="none",
            num_classes=None,
            licence="Apache-2.0",
            paper=PAPER,
        )
    )
