"""Wide Residual Networks.

Zagoruyko & Komodakis 2016, "Wide Residual Networks", BMVC, arXiv:1605.07146.

The CIFAR networks WRN-d-k (paper Table 1): a 3x3 stem of 16 filters, then three stages of
``16k``, ``32k`` and ``64k`` filters at 32x32, 16x16 and 8x8, made of pre-activation
(BN-ReLU-conv) blocks whose convolution kernels are the paper's block type (section 2.1:
B(3,3), B(3,1,3), B(1,3,1), B(1,3), B(3,1), B(3,1,1)), with dropout between the convolutions
(section 2.4) and a 1x1 projection shortcut where the width or the stride changes. The last stage
ends with BN-ReLU, as every pre-activation network must. Depth counts the convolutions plus 4
(the reference code's convention), so ``depth = 3 * l * n + 4`` for ``n`` blocks per stage of
``l`` convolutions (``6n + 4`` for B(3,3)), as in Table 3 (deepening factor). Table 2 (block
types) instead kept ``n = (depth - 4) / 6`` for every block type: its B(1,3,1) and B(3,1,1)
"WRN-40-2" are our ``wrn_58_2`` and its B(3,1,3) "WRN-22-2" our ``wrn_31_2`` (same blocks, same
parameter counts).

The ImageNet network ``wide_resnet50_2`` (paper section 4, "WRN-50-2-bottleneck") is ResNet-50
with its bottleneck 3x3 (and the 1x1 convs around it) twice as wide, post-activation, in the
torchvision layout (stride on the 3x3 conv, symmetric padding, no conv biases).

The blocks are ResNet's own :func:`~transferkit.models.resnet.residual_block`: a wide block is a
ResNet block with other kernel sizes, wider inner convolutions and dropout between them, so
this module holds only the layouts, and a fix to the block reaches both families.

Every ``wrn_{depth}_{width}`` and ``wide_resnet{depth}_{width}`` name builds; a name fixes the
depth and width it spells, so ``create_model("wrn_28_10", depth=16)`` is refused (ask for
``"wrn_16_10"``), while ``block_dropout``, ``block_type`` and ``l`` stay options.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import keras

from transferkit.errors import ConfigError
from transferkit.models.common import check_min_size, norm_act, padded_conv
from transferkit.models.resnet import (
    BLOCK_ORDERS,
    BOTTLENECK_EXPANSION,
    BOTTLENECK_KERNELS,
    drop_path_rates,
    residual_block,
)
from transferkit.models.registry import Builder, ModelInfo, register_model, register_pattern, residual_family_info

BN_EPSILON = 1e-5  # the Torch references' value (no Keras weights exist to match)

# Layouts as data: stem (filters, kernel, stride, max-pool), stage widths before the width
# factor, stride entering each stage, block order (a ResNet BLOCK_ORDERS key: pre-activation
# CIFAR blocks, post-activation ImageNet bottlenecks), the output width of a block as a multiple
# of its stage's width (None: as wide as its inner convolutions, k times), and depth -> blocks
# per stage for the ImageNet bottleneck nets (the CIFAR ones derive blocks from depth).
CIFAR = {
    "stem": (16, 3, 1, False),
    "widths": (16, 32, 64),
    "strides": (1, 2, 2),
    "block_order": "full_preact",
    "expansion": None,
}
IMAGENET = {
    "stem": (64, 7, 2, True),
    "widths": (64, 128, 256, 512),
    "strides": (1, 2, 2, 2),
    "block_order": "original",
    "expansion": BOTTLENECK_EXPANSION,  # only the inner convolutions widen (section 4)
}
IMAGENET_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}

# Section 2.1: kernel sizes of the convolutions of one block. B(3,...,3) of any length is the
# deepening factor l of section 2.2 (Table 3).
BLOCK_TYPES = {
    "B(3,3)": (3, 3),
    "B(3,1,3)": (3, 1, 3),
    "B(1,3,1)": (1, 3, 1),
    "B(1,3)": (1, 3),
    "B(3,1)": (3, 1),
    "B(3,1,1)": (3, 1, 1),
}
DEFAULT_BLOCK = "B(3,3)"

# (depth, width) -> the paper's parameter count (10 classes): Table 4, and WRN-16-4 / WRN-52-1
# of Table 6. The named set is registered; the rest resolve through the pattern.
PAPER_PARAMS = {
    (40, 1): 600_000,
    (40, 2): 2_200_000,
    (40, 4): 8_900_000,
    (40, 8): 35_700_000,
    (28, 10): 36_500_000,
    (28, 12): 52_500_000,
    (22, 8): 17_200_000,
    (22, 10): 26_800_000,
    (16, 8): 11_000_000,
    (16, 10): 17_100_000,
    (16, 4): 2_700_000,
    (52, 1): 800_000,
}
NAMED = ((16, 4), (16, 8), (22, 8), (28, 10), (40, 1), (40, 2), (40, 4))
# Section 4 (ImageNet): WRN-50-2-bottleneck, 68.9M parameters.
IMAGENET_PAPER_PARAMS = {(50, 2): 68_900_000}
PAPER = "Zagoruyko & Komodakis 2016, Wide Residual Networks, arXiv:1605.07146"


def block_kernels(block_type: str | Sequence[int] | None, l: int | None = None) -> tuple[int, ...]:
    """Kernel sizes of a block type: ``"B(3,1,3)"``, ``"3,1,3"`` or ``(3, 1, 3)``.

    Args:
        block_type: One of :data:`BLOCK_TYPES` in any of those spellings; ``None`` is B(3,3).
        l: Convolutions per block (deepening factor); only B(3,...,3) blocks can change it.

    Raises:
        ConfigError: an unknown block type, or ``l`` that contradicts it.
    """
    spelled = DEFAULT_BLOCK if block_type is None else block_type
    try:
        if isinstance(spelled, str):
            text = re.sub(r"\s", "", spelled.upper())
            text = text[1:] if text.startswith("B") else text
            kernels = tuple(int(k) for k in text.strip("()").split(","))
        else:
            kernels = tuple(int(k) for k in spelled)
    except (TypeError, ValueError):
        kernels = ()
    all_3x3 = bool(kernels) and set(kernels) == {3}
    if not (all_3x3 or kernels in BLOCK_TYPES.values()):
        raise ConfigError(
            f"unknown WRN block_type {block_type!r}; valid: {', '.join(BLOCK_TYPES)} "
            "(or B(3,...,3) with l convolutions; '3,1,3' and (3, 1, 3) spell the same)"
        )
    if l is None:
        return kernels
    if not isinstance(l, int) or l < 1:
        raise ConfigError(f"WRN l (convolutions per block) must be a positive integer, got {l!r}")
    if all_3x3:
        return (3,) * l
    if l != len(kernels):
        raise ConfigError(
            f"block_type {block_type!r} has {len(kernels)} convolutions, but l={l}; only "
            "B(3,3) blocks take a deepening factor l (B(3,3,3) for l=3)"
        )
    return kernels


def cifar_blocks(depth: int, convs_per_block: int = 2) -> int:
    """Blocks per stage of a CIFAR WRN: ``depth = 3 * convs_per_block * n + 4``.

    Raises:
        ConfigError: a depth the formula cannot make; the message names the valid neighbours.
    """
    step = 3 * convs_per_block
    n, rest = divmod(depth - 4, step) if isinstance(depth, int) else (0, 1)
    if rest or n < 1:
        form = f"{step}n+4"
        below = 4 + step * ((depth - 4) // step) if isinstance(depth, int) else 0
        neighbours = [d for d in (below, below + step) if d > 4] if isinstance(depth, int) else []
        neighbours = [d for d in neighbours if d != depth] or [4 + step, 4 + 2 * step]
        raise ConfigError(
            f"WRN depth must be {form} (n >= 1 blocks per stage of {convs_per_block} "
            f"convolutions), got {depth!r}; valid neighbours: {', '.join(map(str, neighbours))}"
        )
    return n


def wide_resnet(
    x: Any,
    depth: int = 28,
    width: int = 10,
    dataset: str = "cifar",
    block_type: str | Sequence[int] | None = None,
    l: int | None = None,
    block_dropout: float = 0.0,
    drop_path: float = 0.0,
) -> Any:
    """Wide ResNet backbone (headless).

    Args:
        x: Preprocessed image tensor.
        depth: CIFAR: ``3 * l * n + 4`` (``6n + 4`` for B(3,3)). ImageNet: 50, 101 or 152.
        width: Width factor k (CIFAR stages are ``16k, 32k, 64k``; ImageNet bottlenecks are
            ``k`` times as wide as ResNet's).
        dataset: ``"cifar"`` (pre-activation, three stages) or ``"imagenet"`` (post-activation
            bottlenecks, four stages, torchvision layout).
        block_type: CIFAR block type, e.g. ``"B(3,3)"`` (default) or ``"B(1,3,1)"``; see
            :func:`block_kernels`. ImageNet blocks are always bottlenecks.
        l: Convolutions per B(3,...,3) block (deepening factor; default 2).
        block_dropout: Dropout rate between the convolutions of every block. (``dropout`` of
            :func:`~transferkit.models.registry.create_model` is the head's.)
        drop_path: Stochastic depth rate of the last block
            (:func:`~transferkit.models.resnet.drop_path_rates`); 0: off.

    Returns:
        The last stage's feature map (stride 4 for CIFAR, 32 for ImageNet).

    Raises:
        ConfigError: a depth or width the layout cannot make, an unknown block type, a dropout
            outside [0, 1), or an input smaller than the network downsamples.
    """
    if dataset not in ("cifar", "imagenet"):
        raise ConfigError(f"unknown WRN dataset {dataset!r}; valid: cifar, imagenet")
    if not isinstance(width, int) or width < 1:
        raise ConfigError(f"WRN width k must be a positive integer, got {width!r}")
    if not 0.0 <= float(block_dropout) < 1.0:
        raise ConfigError(f"WRN block_dropout must be in [0, 1), got {block_dropout!r}")
    if dataset == "cifar":
        layout = CIFAR
        kernels = block_kernels(block_type, l)
        blocks = (cifar_blocks(depth, len(kernels)),) * len(layout["widths"])
    else:
        layout = IMAGENET
        if block_type is not None or l is not None:
            raise ConfigError(
                "ImageNet Wide ResNets use bottleneck blocks; drop block_type and l "
                "(they choose the block of dataset='cifar' networks)"
            )
        if depth not in IMAGENET_DEPTHS:
            raise ConfigError(
                f"no ImageNet Wide ResNet of depth {depth!r}; valid: "
                f"{', '.join(map(str, IMAGENET_DEPTHS))}"
            )
        kernels = BOTTLENECK_KERNELS
        blocks = IMAGENET_DEPTHS[depth]
    stem_filters, stem_kernel, stem_stride, stem_pool = layout["stem"]
    total_stride = stem_stride * (2 if stem_pool else 1)
    for s in layout["strides"]:
        total_stride *= s
    check_min_size(x, total_stride, f"WRN-{depth}-{width}")

    preact = BLOCK_ORDERS[layout["block_order"]][0]
    # Pre-activation stems end at the conv: the first block's BN-ReLU follows it.
    x = padded_conv(x, stem_filters, stem_kernel, stem_stride, "stem_conv")
    if not preact:
        x = norm_act(x, ("bn", "relu"), "stem", BN_EPSILON)
    if stem_pool:
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    options = dict(
        kernels=kernels,
        block_order=layout["block_order"],
        # A 1x1 projection where the width changes, which is wherever the stride does
        # (models/wide-resnet.lua); it sees the activated input of a pre-activation block.
        shortcut="B",
        conv_bias="none",
        # The first convolution larger than 1x1 strides (torchvision strides a bottleneck's 3x3).
        stride_in_3x3=True,
        dropout=block_dropout,
        bn_epsilon=BN_EPSILON,
        shortcut_first=False,  # the Torch references' order, which seeded initial weights follow
    )
    rates = iter(drop_path_rates(drop_path, sum(blocks)))
    stages = zip(layout["widths"], layout["strides"], blocks)
    for s, (base, stride, n) in enumerate(stages, start=1):
        out_filters = base * (layout["expansion"] or width)
        for b in range(1, n + 1):
            x = residual_block(
                x,
                base * width,
                stride if b == 1 else 1,
                f"stage{s}_block{b}",
                out_filters=out_filters,
                drop_path=next(rates),
                **options,
            )
    # Every pre-activation network ends with the BN-ReLU its blocks begin with.
    return norm_act(x, preact, f"stage{len(blocks)}_post", BN_EPSILON)


def _name(depth: int, width: int, dataset: str) -> str:
    return f"wrn_{depth}_{width}" if dataset == "cifar" else f"wide_resnet{depth}_{width}"


def _named_builder(depth: int, width: int, dataset: str) -> Builder:
    """The builder of a name: depth and width come from the name and cannot be overridden."""

    def build(x: Any, **options: Any) -> Any:
        for key, fixed in (("depth", depth), ("width", width), ("dataset", dataset)):
            value = options.pop(key, fixed)
            if value != fixed:
                raise ConfigError(
                    f"{_name(depth, width, dataset)} fixes {key}={fixed!r}, got {key}={value!r}; ask for the network by "
                    "its name instead, e.g. create_model('wrn_16_2') (every wrn_{depth}_{width} "
                    "and wide_resnet{depth}_{width} name builds)"
                )
        return wide_resnet(x, depth, width, dataset, **options)

    return build


def _info(name: str, depth: int, width: int, dataset: str) -> ModelInfo:
    cifar = dataset == "cifar"
    stages = len((CIFAR if cifar else IMAGENET)["widths"])
    paper_params = (PAPER_PARAMS if cifar else IMAGENET_PAPER_PARAMS).get((depth, width))
    # CIFAR: no published weights, [-1, 1]; ImageNet: torchvision's normalisation.
    preprocessing = "tf" if cifar else "torch"
    builder = _named_builder(depth, width, dataset)
    kwargs = {"depth": depth, "width": width, "dataset": dataset}
    return residual_family_info(name, "wide_resnet", builder, kwargs, cifar, stages, preprocessing, paper_params, PAPER)


def _resolve_cifar(match: re.Match[str]) -> ModelInfo:
    """``wrn_{depth}_{width}``: a B(3,3) network by default, so ``6n + 4``; depths ``3n + 4`` pass
    here because some block (B(3), B(3,1,3)...) makes them, and the builder checks the block."""
    depth, width = int(match.group(1)), int(match.group(2))
    if (depth - 4) % 3 or depth < 7:
        cifar_blocks(depth)  # raises, naming the 6n+4 rule and the valid neighbours
    if width < 1:
        raise ConfigError(
            f"WRN width k must be a positive integer, got {width} in {match.group(0)!r}"
        )
    return _info(match.group(0), depth, width, "cifar")


def _resolve_imagenet(match: re.Match[str]) -> ModelInfo:
    """``wide_resnet{depth}_{width}``: the ImageNet bottleneck network (depth 50, 101 or 152)."""
    depth, width = int(match.group(1)), int(match.group(2))
    if depth not in IMAGENET_DEPTHS or width < 1:
        raise ConfigError(
            f"no ImageNet Wide ResNet {match.group(0)!r}; depth must be one of "
            f"{', '.join(map(str, IMAGENET_DEPTHS))} and width >= 1, e.g. wide_resnet50_2"
        )
    return _info(match.group(0), depth, width, "imagenet")


for _depth, _width in NAMED:
    register_model(_info(f"wrn_{_depth}_{_width}", _depth, _width, "cifar"))
register_model(_info("wide_resnet50_2", 50, 2, "imagenet"), aliases=("wrn_50_2_bottleneck",))
register_pattern(r"wrn_(\d+)_(\d+)", _resolve_cifar)
register_pattern(r"wide_resnet(\d+)_(\d+)", _resolve_imagenet)
