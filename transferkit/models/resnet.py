"""ResNet: residual networks for ImageNet and CIFAR, plain and pre-activation forms.

He et al. 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385 (ImageNet
ResNet-18..152, CIFAR ResNet-20..1202, the plain networks, shortcut options A/B/C), and
He et al. 2016, "Identity Mappings in Deep Residual Networks", arXiv:1603.05027 (the block
orders of its Fig. 4 and the full pre-activation networks).

One block function (:func:`residual_block`) builds every variant: basic or bottleneck, any of
the five block orders, shortcut A/B/C or none (plain); with its kernel sizes, inner width and
in-block dropout it also builds every Wide ResNet block (:mod:`transferkit.models.wide_resnet`).
``resnet50/101/152`` are layer for layer ``keras.applications.ResNet50/101/152`` (conv biases,
stride on the first 1x1 conv) and ``resnet50v2/101v2/152v2`` are
``keras.applications.ResNet50V2/...`` (stride on the 3x3 conv of the last block of a stage), so
Keras' published ImageNet weights load. ``resnet18/34``, the ``preact_resnet*`` and the CIFAR
networks follow the papers (no conv biases).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from transferkit.errors import ConfigError
from transferkit.models.common import check_min_size, norm_act, padded_conv
from transferkit.models.registry import ModelInfo, register_model, register_pattern, residual_family_info
from transferkit.models.weights import PretrainedWeights, register_weights

BN_EPSILON = 1.001e-5  # Keras' ResNet value, which its published weights were converted with

# Stems: (filters, kernel, stride, 3x3/2 max-pool after it). Paper Table 1 and section 4.2.
STEMS = {
    "imagenet": (64, 7, 2, True),
    "cifar": (16, 3, 1, False),
}
# Stage widths (bottleneck blocks output 4x) and the stride that enters each stage.
WIDTHS = {"imagenet": (64, 128, 256, 512), "cifar": (16, 32, 64)}
STRIDES = {"imagenet": (1, 2, 2, 2), "cifar": (1, 2, 2)}
# Kernel sizes of the convolutions of a basic and of a bottleneck block (paper Fig. 5).
BASIC_KERNELS = (3, 3)
BOTTLENECK_KERNELS = (1, 3, 1)
BOTTLENECK_EXPANSION = 4

# ImageNet depths (paper Table 1): depth -> (blocks per stage, bottleneck).
IMAGENET_DEPTHS = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
    200: ((3, 24, 36, 3), True),  # Identity Mappings, section 4.2
}

# Identity Mappings Fig. 4 as data: (activation before conv1, ops after the last conv, ops after
# the addition). Inner convs are always followed by BN and ReLU.
BLOCK_ORDERS = {
    "original": ((), ("bn",), ("relu",)),  # (a)
    "bn_after_add": ((), (), ("bn", "relu")),  # (b)
    "relu_before_add": ((), ("bn", "relu"), ()),  # (c)
    "relu_preact": (("relu",), ("bn",), ()),  # (d)
    "full_preact": (("bn", "relu"), (), ()),  # (e)
}
SHORTCUTS = ("A", "B", "C")
CONV_BIASES = ("none", "all", "unnormalized")
DOWNSAMPLE_AT = ("first", "last")

RESNET_PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition, arXiv:1512.03385"
PREACT_PAPER = "He et al. 2016, Identity Mappings in Deep Residual Networks, arXiv:1603.05027"
_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# keras/src/applications/resnet.py WEIGHTS_HASHES[name][1]: md5 of the no-top files.
_NOTOP_HASHES = {
    "resnet50": "4d473c1dd8becc155b73f8504c6f6626",
    "resnet101": "88cf7a10940856eca736dc7b7e228a21",
    "resnet152": "ee4c566cf9a93f14d82f913c2dc6dd0c",
    "resnet50v2": "fac2f116257151a9d068a22e544a4917",
    "resnet101v2": "c0ed64b8031c3730f411d2eb4eea35b5",
    "resnet152v2": "ed17cf2e0169df9d443503ef94b23b33",
}


@keras.saving.register_keras_serializable(package="transferkit")
class ZeroPadShortcut(keras.layers.Layer):
    """Shortcut option A: identity, subsampled by ``strides``, zero-padded to ``filters`` channels.

    Written by hand because Keras has no layer that pads the channel axis.

    Args:
        strides: Spatial subsampling (takes every ``strides``-th pixel, as a 1x1 max-pool would).
        filters: Output channels; the extra channels are zeros.
    """

    def __init__(self, strides: int = 1, filters: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strides = strides
        self.filters = filters

    def call(self, inputs: Any) -> Any:
        x = inputs[:, :: self.strides, :: self.strides, :] if self.strides > 1 else inputs
        extra = 0 if self.filters is None else self.filters - x.shape[-1]
        return ops.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra))) if extra > 0 else x

    def compute_output_shape(self, input_shape: Any) -> Any:
        n, h, w, c = input_shape
        s = self.strides
        h = None if h is None else -(-h // s)
        w = None if w is None else -(-w // s)
        return (n, h, w, c if self.filters is None else max(c, self.filters))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "strides": self.strides, "filters": self.filters}


def residual_block(
    x: Any,
    filters: int,
    stride: int,
    name: str,
    *,
    bottleneck: bool = False,
    kernels: Sequence[int] | None = None,
    out_filters: int | None = None,
    block_order: str = "original",
    shortcut: str = "B",
    plain: bool = False,
    conv_bias: str = "none",
    stride_in_3x3: bool = False,
    dropout: float = 0.0,
    bn_epsilon: float = BN_EPSILON,
    shortcut_first: bool = True,
    drop_path: float = 0.0,
) -> Any:
    """One residual unit: ``shortcut(x) + F(x)`` with BN/ReLU placed by ``block_order``.

    Every ResNet and every Wide ResNet block is this function. A wide block differs from a
    ResNet block only in its kernel sizes, the width of its inner convolutions and dropout
    between them (Zagoruyko & Komodakis 2016, section 2), so those are arguments here rather
    than a second block that would have to be kept in step with this one.

    Args:
        x: Input tensor.
        filters: Width of the block's inner convolutions (every one but the last).
        stride: Spatial stride of the block.
        name: Layer name prefix, e.g. ``"stage3_block2"``.
        bottleneck: 1x1-3x3-1x1 bottleneck that outputs ``4 * filters`` channels (True) or
            3x3-3x3 basic block (False); the defaults of ``kernels`` and ``out_filters``.
        kernels: Kernel size of each convolution, e.g. a Wide ResNet block type such as
            ``(1, 3, 1)`` or ``(3, 1, 3)``; ``None`` takes them from ``bottleneck``.
        out_filters: Width of the last convolution, hence of the block's output; ``None``
            takes it from ``bottleneck``. WRN-50-2 widens only the inner convolutions, so its
            output stays ResNet-50's.
        block_order: One of :data:`BLOCK_ORDERS` (Identity Mappings Fig. 4 (a)-(e)).
        shortcut: ``"A"`` zero-padded identity, ``"B"`` projection where the channels change,
            ``"C"`` projection on every block. A/B subsample a strided identity.
        plain: No shortcut at all (the paper's plain networks).
        conv_bias: ``"none"``, ``"all"`` (Keras ResNet v1) or ``"unnormalized"`` (bias only on
            convs not followed by BN, Keras ResNet v2).
        stride_in_3x3: Stride on the first convolution larger than 1x1 (a bottleneck's 3x3, as
            Keras v2 and torchvision do: a strided 1x1 skips three pixels in four) instead of on
            the first convolution (Keras v1, whose weights expect it there).
        dropout: Dropout rate after the BN-ReLU of every convolution but the last (Wide ResNet
            section 2.4); 0 adds no layer.
        bn_epsilon: Epsilon of every BatchNormalization; the value the weights to be loaded
            were trained with.
        shortcut_first: Create the shortcut's layers before the residual branch's (Keras
            applications) or after them (the Torch references). The graph and the order of
            ``model.layers`` are the same either way; under a fixed seed the creation order
            decides which initial values each layer draws.
        drop_path: Stochastic depth (Huang et al. 2016, arXiv:1603.09382): in training, the
            residual branch of each example is dropped with this probability (the block is then
            its shortcut) and kept ones are scaled by ``1 / (1 - rate)``; the identity in
            inference. 0 adds no layer; a plain block (no shortcut) has none to drop.

    Returns:
        The block's output tensor.
    """
    preact, after_last, after_add = BLOCK_ORDERS[block_order]
    kernels = tuple(kernels or (BOTTLENECK_KERNELS if bottleneck else BASIC_KERNELS))
    if out_filters is None:
        out_filters = BOTTLENECK_EXPANSION * filters if bottleneck else filters
    widths = (filters,) * (len(kernels) - 1) + (out_filters,)
    spatial = next((i for i, kernel in enumerate(kernels, start=1) if kernel > 1), 1)
    strided_conv = spatial if stride_in_3x3 else 1

    def bias(followed_by_bn: bool) -> bool:
        return conv_bias == "all" or (conv_bias == "unnormalized" and not followed_by_bn)

    def shortcut_path() -> Any:
        if plain:
            return None
        # Projections see the pre-activated input; identities carry the raw one (Identity Mappings).
        if shortcut == "C" or (x.shape[-1] != out_filters and shortcut == "B"):
            normalized = "bn" in after_last  # normalized like the branch it is added to
            residual = keras.layers.Conv2D(
                out_filters, 1, strides=stride, use_bias=bias(normalized), name=f"{name}_shortcut"
            )(activated)
            return norm_act(residual, ("bn",) if normalized else (), f"{name}_shortcut", bn_epsilon)
        if stride > 1 or x.shape[-1] != out_filters:
            return ZeroPadShortcut(stride, out_filters, name=f"{name}_shortcut")(x)
        return x

    activated = norm_act(x, preact, f"{name}_preact", bn_epsilon)
    residual = shortcut_path() if shortcut_first else None
    y = activated
    for i, (kernel, width) in enumerate(zip(kernels, widths), start=1):
        last = i == len(kernels)
        post = after_last if last else ("bn", "relu")
        conv_stride = stride if i == strided_conv else 1
        y = padded_conv(y, width, kernel, conv_stride, f"{name}_conv{i}", use_bias=bias("bn" in post))
        y = norm_act(y, post, f"{name}_conv{i}", bn_epsilon)
        if dropout and not last:
            y = keras.layers.Dropout(dropout, name=f"{name}_conv{i}_dropout")(y)
    if not shortcut_first:
        residual = shortcut_path()
    if residual is not None:
        if drop_path:
            y = drop_path_layer(drop_path, f"{name}_drop_path")(y)
            # A layer on the shortcut too: Keras orders model.layers by depth, so every layer before
            # the addition keeps its place, which legacy .h5 weights (paired in order) rely on.
            residual = keras.layers.Identity(name=f"{name}_shortcut_identity")(residual)
        y = keras.layers.Add(name=f"{name}_add")([residual, y])
    return norm_act(y, after_add, f"{name}_out", bn_epsilon)


def drop_path_layer(rate: float, name: str) -> keras.layers.Layer:
    """Keras' Dropout with one mask value per example: drops a whole residual branch (no weights)."""
    return keras.layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=name)


def drop_path_rates(rate: float, blocks: int) -> list[float]:
    """Stochastic depth's linear decay rule: block ``i`` of ``blocks`` drops with ``rate * i / blocks``
    (the first never, the last almost ``rate``), as EfficientNet's drop_connect_rate does."""
    if not 0.0 <= float(rate) < 1.0:
        raise ConfigError(f"drop_path must be in [0, 1), got {rate!r}")
    return [rate * i / blocks for i in range(blocks)]


def resnet(
    x: Any,
    depth: int = 50,
    dataset: str = "imagenet",
    bottleneck: bool | None = None,
    block_order: str = "original",
    shortcut: str = "B",
    plain: bool = False,
    conv_bias: str = "none",
    stride_in_3x3: bool = False,
    downsample_at: str = "first",
    drop_path: float = 0.0,
) -> Any:
    """ResNet backbone (headless).

    Args:
        x: Preprocessed image tensor.
        depth: ImageNet: 18, 34, 50, 101, 152 (or 200). CIFAR: ``6n + 2`` with basic blocks,
            ``9n + 2`` with bottleneck blocks (n blocks per stage).
        dataset: ``"imagenet"`` (7x7/2 stem with max-pool, four stages of 64..512) or ``"cifar"``
            (3x3 stem, three stages of 16/32/64).
        bottleneck: Bottleneck blocks; by default ImageNet depths >= 50 use them, CIFAR none.
        block_order: ``"original"``, ``"bn_after_add"``, ``"relu_before_add"``,
            ``"relu_preact"`` or ``"full_preact"`` (Identity Mappings Fig. 4 (a)-(e)). With the
            pre-activation orders the stem drops the ops the first block begins with, and the
            last stage ends with them (``stageN_post_bn``, ``stageN_post_relu``).
        shortcut: ``"A"``, ``"B"`` or ``"C"`` (paper section 4.1).
        plain: Drop every shortcut (the paper's plain baselines); only with shortcut A or B.
        conv_bias: ``"none"`` (papers), ``"all"`` (Keras ResNet v1), ``"unnormalized"``
            (Keras ResNet v2).
        stride_in_3x3: Put a bottleneck's stride on its 3x3 conv (Keras v2, fb.resnet.torch).
        downsample_at: ``"first"`` block of a stage strides (the papers), or the ``"last"``
            block of the stage before (Keras ResNet v2 layout).
        drop_path: Stochastic depth rate of the last block (:func:`drop_path_rates`); 0: off.

    Returns:
        The last stage's feature map (stride 32 for ImageNet, 4 for CIFAR).

    Raises:
        ConfigError: an unknown option, a depth the dataset's layout cannot make, plain with
            shortcut C, or an input smaller than the network downsamples.
    """
    blocks, bottleneck = _blocks(depth, dataset, bottleneck)
    _check_choice("block_order", block_order, tuple(BLOCK_ORDERS))
    _check_choice("shortcut", shortcut, SHORTCUTS)
    _check_choice("conv_bias", conv_bias, CONV_BIASES)
    _check_choice("downsample_at", downsample_at, DOWNSAMPLE_AT)
    if plain and shortcut == "C":
        raise ConfigError(
            "plain=True drops every shortcut, but shortcut='C' asks for a projection on every "
            "block; use plain=True with shortcut 'A' or 'B', or plain=False with 'C'"
        )
    stem_filters, stem_kernel, stem_stride, stem_pool = STEMS[dataset]
    strides = STRIDES[dataset]
    total_stride = stem_stride * (2 if stem_pool else 1)
    for s in strides:
        total_stride *= s
    check_min_size(x, total_stride, f"ResNet-{depth} ({dataset})")
    # Keras maps a functional graph recursively, about one Python frame per layer; ResNet-1202
    # is ~4,200 layers deep, past Python's default limit of 1,000.
    needed = 2 * 12 * sum(blocks) + 1000
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)

    preact = BLOCK_ORDERS[block_order][0]
    stem_ops = tuple(op for op in ("bn", "relu") if op not in preact)
    if stem_stride > 1:
        x = keras.layers.ZeroPadding2D(stem_kernel // 2, name="stem_pad")(x)
    x = keras.layers.Conv2D(
        stem_filters,
        stem_kernel,
        strides=stem_stride,
        padding="valid" if stem_stride > 1 else "same",
        use_bias=conv_bias == "all" or (conv_bias == "unnormalized" and "bn" not in stem_ops),
        name="stem_conv",
    )(x)
    x = norm_act(x, stem_ops, "stem", BN_EPSILON)
    if stem_pool:
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)

    if plain and drop_path:
        raise ConfigError("a plain network has no residual branches for drop_path to drop; use plain=False or drop_path=0")
    rates = iter(drop_path_rates(drop_path, sum(blocks)))
    block_strides = _block_strides(blocks, strides, downsample_at)
    options = dict(
        bottleneck=bottleneck,
        block_order=block_order,
        shortcut=shortcut,
        plain=plain,
        conv_bias=conv_bias,
        stride_in_3x3=stride_in_3x3,
    )
    for s, (width, stage_strides) in enumerate(zip(WIDTHS[dataset], block_strides), start=1):
        for b, stride in enumerate(stage_strides, start=1):
            x = residual_block(x, width, stride, f"stage{s}_block{b}", drop_path=next(rates), **options)
    return norm_act(x, preact, f"stage{len(blocks)}_post", BN_EPSILON)


def _check_choice(option: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"unknown ResNet {option} {value!r}; valid: {', '.join(valid)}")


def _blocks(depth: int, dataset: str, bottleneck: bool | None) -> tuple[tuple[int, ...], bool]:
    """Blocks per stage for a depth, and whether they are bottlenecks."""
    _check_choice("dataset", dataset, tuple(STEMS))
    if not isinstance(depth, int) or isinstance(depth, bool):
        raise ConfigError(f"ResNet depth must be an integer, got {depth!r}")
    if dataset == "imagenet":
        if depth not in IMAGENET_DEPTHS:
            raise ConfigError(
                f"no ImageNet ResNet of depth {depth!r}; valid: "
                f"{', '.join(map(str, IMAGENET_DEPTHS))} (or dataset='cifar' for 6n+2 depths)"
            )
        blocks, is_bottleneck = IMAGENET_DEPTHS[depth]
        if bottleneck is not None and bottleneck != is_bottleneck:
            kind = "bottleneck" if is_bottleneck else "basic"
            raise ConfigError(
                f"ImageNet ResNet-{depth} has {kind} blocks, got bottleneck={bottleneck}"
            )
        return blocks, is_bottleneck
    bottleneck = bool(bottleneck)
    layers_per_block = 3 if bottleneck else 2
    per_stage, rest = divmod(depth - 2, 3 * layers_per_block)
    if rest or per_stage < 1:
        form = "9n+2 (bottleneck)" if bottleneck else "6n+2 (basic blocks)"
        raise ConfigError(
            f"CIFAR ResNet depth must be {form} with n >= 1, e.g. "
            f"{'29, 56, 110, 164' if bottleneck else '20, 32, 44, 56, 110, 1202'}; got {depth!r}"
        )
    return (per_stage,) * 3, bottleneck


def _block_strides(
    blocks: tuple[int, ...], strides: tuple[int, ...], downsample_at: str
) -> list[list[int]]:
    """Stride of every block: a stage's stride on its first block, or (Keras v2) on the last
    block of the stage before it."""
    out = [[1] * n for n in blocks]
    for s, stride in enumerate(strides):
        if downsample_at == "first":
            out[s][0] = stride
        elif s > 0:
            out[s - 1][-1] = stride
        elif stride > 1:
            out[0][0] = stride
    return out


# Registered variants: name -> (builder kwargs, paper params, paper, aliases).
_KERAS_V1 = {"conv_bias": "all"}
_KERAS_V2 = {
    "block_order": "full_preact",
    "conv_bias": "unnormalized",
    "stride_in_3x3": True,
    "downsample_at": "last",
}
_PREACT = {"block_order": "full_preact", "stride_in_3x3": True}
_CIFAR = {"dataset": "cifar", "shortcut": "A"}
# ImageNet parameter counts: the widely cited figures (the paper gives FLOPs only).
# CIFAR: paper Table 6 and Identity Mappings Table 2/3.
VARIANTS: dict[str, tuple[dict[str, Any], int | None, str, tuple[str, ...]]] = {
    "resnet18": ({"depth": 18}, 11_700_000, RESNET_PAPER, ()),
    "resnet34": ({"depth": 34}, 21_800_000, RESNET_PAPER, ()),
    "resnet50": ({"depth": 50, **_KERAS_V1}, 25_600_000, RESNET_PAPER, ()),
    "resnet101": ({"depth": 101, **_KERAS_V1}, 44_500_000, RESNET_PAPER, ()),
    "resnet152": ({"depth": 152, **_KERAS_V1}, 60_200_000, RESNET_PAPER, ()),
    **{
        f"preact_resnet{d}": ({"depth": d, **_PREACT}, None, PREACT_PAPER, (f"preresnet{d}",))
        for d in (18, 34, 50, 101, 152)
    },
    **{
        f"resnet{d}v2": ({"depth": d, **_KERAS_V2}, None, PREACT_PAPER, (f"resnet{d}_v2",))
        for d in (50, 101, 152)
    },
    "resnet20": ({"depth": 20, **_CIFAR}, 270_000, RESNET_PAPER, ()),
    "resnet32": ({"depth": 32, **_CIFAR}, 460_000, RESNET_PAPER, ()),
    "resnet44": ({"depth": 44, **_CIFAR}, 660_000, RESNET_PAPER, ()),
    "resnet56": ({"depth": 56, **_CIFAR}, 850_000, RESNET_PAPER, ()),
    "resnet110": ({"depth": 110, **_CIFAR}, 1_700_000, RESNET_PAPER, ()),
    "resnet1202": ({"depth": 1202, **_CIFAR}, 19_400_000, RESNET_PAPER, ()),
    "preact_resnet110": (
        {"depth": 110, "dataset": "cifar", "shortcut": "B", **_PREACT},
        1_700_000,
        PREACT_PAPER,
        ("preresnet110",),
    ),
    "preact_resnet164": (
        {"depth": 164, "dataset": "cifar", "bottleneck": True, "shortcut": "B", **_PREACT},
        1_700_000,
        PREACT_PAPER,
        ("preresnet164",),
    ),
}


def _info(name: str, kwargs: dict[str, Any], paper_params: int | None, paper: str) -> ModelInfo:
    cifar = kwargs.get("dataset") == "cifar"
    # Keras' v1 weights (biases on every conv) expect caffe preprocessing; the rest [-1, 1].
    preprocessing = "caffe" if kwargs.get("conv_bias") == "all" else "tf"
    stages = len(WIDTHS["cifar" if cifar else "imagenet"])
    return residual_family_info(name, "resnet", resnet, kwargs, cifar, stages, preprocessing, paper_params, paper)


for _name, (_kwargs, _paper_params, _paper, _aliases) in VARIANTS.items():
    register_model(_info(_name, _kwargs, _paper_params, _paper), aliases=_aliases)


def _resolve_depth(match: re.Match[str]) -> ModelInfo:
    """``resnet{d}`` not registered by name: the ImageNet network of a depth in
    :data:`IMAGENET_DEPTHS` (ResNet-200), else the paper's CIFAR network of depth ``6n + 2``."""
    depth = int(match.group(1))
    if depth in IMAGENET_DEPTHS:
        return _info(match.group(0), {"depth": depth}, None, PREACT_PAPER)
    _blocks(depth, "cifar", False)  # raises for depths that are not 6n+2
    return _info(match.group(0), {"depth": depth, **_CIFAR}, None, RESNET_PAPER)


register_pattern(r"resnet(\d+)", _resolve_depth)

for _name, _hash in _NOTOP_HASHES.items():
    _file = f"{_name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    register_weights(
        PretrainedWeights(
            model=_name,
            tag="imagenet",
            file_name=_file,
            url=_WEIGHTS_URL + _file,
            file_hash=_hash,
            input_size=224,
            preprocessing="tf" if _name.endswith("v2") else "caffe",
            num_classes=None,
            licence="MIT" if not _name.endswith("v2") else "Apache-2.0",
            paper=PREACT_PAPER if _name.endswith("v2") else RESNET_PAPER,
        )
    )
