"""DenseNet.

Huang et al. 2017, "Densely Connected Convolutional Networks", CVPR, arXiv:1608.06993.

Dense blocks of pre-activation layers (BN-ReLU-conv3x3, or with the bottleneck "B"
BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k)), each concatenating its ``k`` (growth rate) new feature
maps to its input; transitions (BN-ReLU-conv1x1-avgpool2x2) between blocks keep
``floor(compression * channels)`` channels ("C": compression < 1). The last block ends with
BN-ReLU.

ImageNet forms (paper Table 1, DenseNet-BC, k = 32): a 7x7/2 stem of ``2k`` filters and a 3x3/2
max-pool, four dense blocks. ``densenet121/169/201`` are layer for layer
``keras.applications.DenseNet121/169/201`` (BN epsilon 1.001e-5, bias-free convs, torch
preprocessing), so Keras' published ImageNet weights load. CIFAR forms (section 3): a 3x3 stem
of 16 filters (``2k`` with bottlenecks), three dense blocks of ``(depth - 4) / 3`` layers
(``/ 6`` with bottlenecks) at 32x32, 16x16 and 8x8.

Stage N is dense block N; the transition that downsamples into it (``stageN_transition_*``)
belongs to it, as a strided first block belongs to a ResNet stage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import keras

from transferkit.errors import ConfigError
from transferkit.models.common import check_min_size
from transferkit.models.registry import ModelInfo, register_model, register_pattern, residual_family_info
from transferkit.models.weights import PretrainedWeights, register_weights

BN_EPSILON = 1.001e-5  # Keras' DenseNet value, which its published weights were converted with
BOTTLENECK_WIDTH = 4  # a bottleneck's 1x1 conv makes 4k maps (section 3, DenseNet-B)

# Table 1: ImageNet depth -> layers per dense block.
IMAGENET_BLOCKS = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}
# Stems: (kernel, stride, BN-ReLU + 3x3/2 max-pool after the conv). Filters: see _stem_filters.
STEMS = {"imagenet": (7, 2, True), "cifar": (3, 1, False)}
CIFAR_STAGES = 3
CIFAR_PLAIN_STEM = 16

# Registered variants: name -> (builder kwargs, paper params). ImageNet: the commonly cited counts
# of the 1000-class models (DenseNet-264's 33.3M as torchvision-style ports count it). CIFAR:
# Table 2, C10 (10 classes).
_BC = {"bottleneck": True, "compression": 0.5}
_PLAIN = {"bottleneck": False, "compression": 1.0}
_CIFAR_BC = {"dataset": "cifar", **_BC}
_CIFAR_PLAIN = {"dataset": "cifar", **_PLAIN}
VARIANTS: dict[str, tuple[dict[str, Any], int]] = {
    "densenet121": ({"depth": 121, "growth_rate": 32, **_BC}, 8_000_000),
    "densenet169": ({"depth": 169, "growth_rate": 32, **_BC}, 14_100_000),
    "densenet201": ({"depth": 201, "growth_rate": 32, **_BC}, 20_000_000),
    "densenet264": ({"depth": 264, "growth_rate": 32, **_BC}, 33_300_000),
    "densenet40_k12": ({"depth": 40, "growth_rate": 12, **_CIFAR_PLAIN}, 1_000_000),
    "densenet100_k12": ({"depth": 100, "growth_rate": 12, **_CIFAR_PLAIN}, 7_000_000),
    "densenet100_k24": ({"depth": 100, "growth_rate": 24, **_CIFAR_PLAIN}, 27_200_000),
    "densenet_bc100_k12": ({"depth": 100, "growth_rate": 12, **_CIFAR_BC}, 800_000),
    "densenet_bc250_k24": ({"depth": 250, "growth_rate": 24, **_CIFAR_BC}, 15_300_000),
    "densenet_bc190_k40": ({"depth": 190, "growth_rate": 40, **_CIFAR_BC}, 25_600_000),
}
PAPER = "Huang et al. 2017, Densely Connected Convolutional Networks, arXiv:1608.06993"

_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
# keras/src/applications/densenet.py: md5 of the no-top files.
_NOTOP_HASHES = {
    "densenet121": "30ee3e1110167f948a6b9946edeeb738",
    "densenet169": "b8c4d4c20dd625c148057b9ff1c1176b",
    "densenet201": "c13680b51ded0fb44dff2d8f86ac8bb1",
}


def _bn_relu(x: Any, name: str) -> Any:
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def _dropout(x: Any, rate: float, name: str) -> Any:
    return keras.layers.Dropout(rate, name=name)(x) if rate else x


def dense_layer(x: Any, growth_rate: int, bottleneck: bool, dropout: float, name: str) -> Any:
    """One layer of a dense block: ``concat(x, H(x))`` with ``H`` making ``growth_rate`` maps.

    ``H`` is BN-ReLU-conv3x3, or with ``bottleneck`` BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3 (the
    order of Keras' ``conv_block``, so its weights line up).

    Args:
        x: Input tensor (every earlier map of the block).
        growth_rate: k, the maps this layer adds.
        bottleneck: Put a 1x1 conv of ``4k`` filters before the 3x3 (DenseNet-B).
        dropout: Dropout after each conv (the paper's 0.2 without augmentation); 0 adds none.
        name: Layer name prefix, e.g. ``"stage2_block5"``.

    Returns:
        ``x`` with ``growth_rate`` more channels.
    """
    y = _bn_relu(x, f"{name}_preact")
    kernels = ((1, BOTTLENECK_WIDTH * growth_rate),) if bottleneck else ()
    kernels += ((3, growth_rate),)
    for i, (kernel, filters) in enumerate(kernels, start=1):
        if i > 1:
            y = _bn_relu(y, f"{name}_conv{i - 1}")
        y = keras.layers.Conv2D(
            filters, kernel, padding="same", use_bias=False, name=f"{name}_conv{i}"
        )(y)
        y = _dropout(y, dropout, f"{name}_conv{i}_dropout")
    return keras.layers.Concatenate(name=f"{name}_concat")([x, y])


def transition(x: Any, compression: float, dropout: float, name: str) -> Any:
    """BN-ReLU-conv1x1 to ``floor(compression * channels)`` maps, then 2x2/2 average pooling."""
    x = _bn_relu(x, name)
    x = keras.layers.Conv2D(
        int(x.shape[-1] * compression), 1, use_bias=False, name=f"{name}_conv"
    )(x)
    x = _dropout(x, dropout, f"{name}_dropout")
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def dense_blocks(depth: int, dataset: str = "imagenet", bottleneck: bool = True) -> tuple[int, ...]:
    """Layers per dense block for a depth: Table 1 for ImageNet, ``(depth - 4) / 3`` equal blocks
    (``/ 6`` with bottlenecks, whose layers hold two convs) for CIFAR.

    Raises:
        ConfigError: a depth the layout cannot make.
    """
    if dataset not in STEMS:
        raise ConfigError(f"unknown DenseNet dataset {dataset!r}; valid: {', '.join(STEMS)}")
    if dataset == "imagenet":
        if depth not in IMAGENET_BLOCKS:
            raise ConfigError(
                f"no ImageNet DenseNet of depth {depth!r}; valid: "
                f"{', '.join(map(str, IMAGENET_BLOCKS))} (or pass blocks=(...) for other layouts)"
            )
        return IMAGENET_BLOCKS[depth]
    convs = 2 if bottleneck else 1
    step = CIFAR_STAGES * convs
    n, rest = divmod(depth - 4, step) if isinstance(depth, int) else (0, 1)
    if rest or n < 1:
        kind = "with bottlenecks" if bottleneck else "without bottlenecks"
        examples = "100, 190, 250" if bottleneck else "40, 100"
        raise ConfigError(
            f"CIFAR DenseNet depth {kind} must be {step}n+4 (n >= 1 layers per dense block), "
            f"e.g. {examples}; got {depth!r}"
        )
    return (n,) * CIFAR_STAGES


def densenet(
    x: Any,
    depth: int | None = 121,
    growth_rate: int = 32,
    bottleneck: bool = True,
    compression: float = 0.5,
    dataset: str = "imagenet",
    blocks: Sequence[int] | None = None,
    stem_filters: int | None = None,
    block_dropout: float = 0.0,
) -> Any:
    """DenseNet backbone (headless).

    Args:
        x: Preprocessed image tensor.
        depth: ImageNet: 121, 169, 201 or 264 (Table 1). CIFAR: ``3n + 4``, or ``6n + 4`` with
            bottlenecks. Ignored when ``blocks`` is given.
        growth_rate: k, the maps each layer adds (>= 1).
        bottleneck: DenseNet-B: a 1x1 conv of ``4k`` maps before each 3x3.
        compression: DenseNet-C's theta in (0, 1]: transitions keep ``floor(theta * m)`` maps.
        dataset: ``"imagenet"`` (7x7/2 stem and max-pool, four blocks) or ``"cifar"`` (3x3 stem,
            three blocks).
        blocks: Layers per dense block, overriding ``depth``.
        stem_filters: Stem width; ``2k`` for ImageNet and bottlenecked CIFAR nets, else 16.
        block_dropout: Dropout after every conv of the dense layers and transitions. (``dropout``
            of :func:`~transferkit.models.registry.create_model` is the head's.)

    Returns:
        The last dense block's feature map after BN-ReLU (stride 32 ImageNet, 4 CIFAR).

    Raises:
        ConfigError: a bad depth, growth rate < 1, compression outside (0, 1], bad blocks or
            dropout, or an input smaller than the network downsamples.
    """
    if isinstance(growth_rate, bool) or not isinstance(growth_rate, int) or growth_rate < 1:
        raise ConfigError(f"DenseNet growth_rate must be an integer >= 1, got {growth_rate!r}")
    if not 0.0 < float(compression) <= 1.0:
        raise ConfigError(f"DenseNet compression must be in (0, 1], got {compression!r}")
    if not 0.0 <= float(block_dropout) < 1.0:
        raise ConfigError(f"DenseNet block_dropout must be in [0, 1), got {block_dropout!r}")
    if blocks is None:
        blocks = dense_blocks(depth, dataset, bottleneck)  # type: ignore[arg-type]
    elif dataset not in STEMS:
        raise ConfigError(f"unknown DenseNet dataset {dataset!r}; valid: {', '.join(STEMS)}")
    blocks = tuple(blocks)
    if not blocks or not all(isinstance(n, int) and n >= 1 for n in blocks):
        raise ConfigError(f"DenseNet blocks must be layer counts >= 1, got {blocks!r}")
    kernel, stride, pooled = STEMS[dataset]
    total_stride = stride * (2 if pooled else 1) * 2 ** (len(blocks) - 1)
    check_min_size(x, total_stride, f"DenseNet ({dataset})")
    if stem_filters is None:
        stem_filters = 2 * growth_rate if dataset == "imagenet" or bottleneck else CIFAR_PLAIN_STEM

    if stride > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name="stem_pad")(x)
    x = keras.layers.Conv2D(
        stem_filters,
        kernel,
        strides=stride,
        padding="valid" if stride > 1 else "same",
        use_bias=False,
        name="stem_conv",
    )(x)
    if pooled:
        x = _bn_relu(x, "stem")
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for s, n in enumerate(blocks, start=1):
        if s > 1:
            x = transition(x, compression, block_dropout, f"stage{s}_transition")
        for b in range(1, n + 1):
            x = dense_layer(x, growth_rate, bottleneck, block_dropout, f"stage{s}_block{b}")
    return _bn_relu(x, f"stage{len(blocks)}_post")


def _info(name: str, kwargs: dict[str, Any], paper_params: int | None) -> ModelInfo:
    cifar = kwargs.get("dataset") == "cifar"
    stages = CIFAR_STAGES if cifar else len(IMAGENET_BLOCKS[121])
    # ImageNet: the mode of Keras' published weights; CIFAR: none published, [-1, 1].
    preprocessing = "tf" if cifar else "torch"
    return residual_family_info(name, "densenet", densenet, kwargs, cifar, stages, preprocessing, paper_params, PAPER)


def _resolve(match: re.Match[str]) -> ModelInfo:
    """``densenet{depth}_k{k}`` (plain) or ``densenet_bc{depth}_k{k}`` CIFAR networks."""
    depth, growth = int(match.group(2)), int(match.group(3))
    form = _CIFAR_BC if match.group(1) else _CIFAR_PLAIN
    dense_blocks(depth, "cifar", form["bottleneck"])
    if growth < 1:
        raise ConfigError(f"DenseNet growth rate must be >= 1, got k{growth} in {match.group(0)!r}")
    kwargs = {"depth": depth, "growth_rate": growth, **form}
    return _info(match.group(0), kwargs, None)


for _name, (_kwargs, _paper_params) in VARIANTS.items():
    register_model(_info(_name, _kwargs, _paper_params))
register_pattern(r"densenet(_bc)?(\d+)_k(\d+)", _resolve)

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
            preprocessing="torch",
            num_classes=None,
            licence="BSD-3-Clause",
            paper=PAPER,
        )
    )
