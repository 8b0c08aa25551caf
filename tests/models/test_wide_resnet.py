"""Wide ResNet: paper Tables 2-4 parameter counts, block types, options, errors.

Gradients, config and .keras round trips and freezing by stage: tests/test_zoo.py.
"""

from __future__ import annotations


import numpy as np
import pytest

import keras
import transferkit as tk
from transferkit.models.registry import parameter_counts
from transferkit.models import resnet as rn
from transferkit.models import wide_resnet as wrn
from transferkit.transfer import base_layers
from transferkit.models.weights import copy_weights_by_order
from zoo_helpers import assert_same, calibrate_batchnorm, images, layer_lines, pinned_layer_cases

SMALL = (32, 32, 3)
IMAGENET_SMALL = (64, 64, 3)
SMALLEST = "wrn_40_1"
PINNED = parameter_counts()
LARGE = 30_000_000


def _learnable(model: keras.Model) -> int:
    """Trainable parameters: what the paper's Torch code counts (BN moving stats are buffers)."""
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _near_paper(ours: int, paper: int) -> bool:
    """Within 2%, or equal at the paper's rounding (millions, one decimal)."""
    return abs(ours - paper) / paper <= 0.02 or round(ours / 1e6, 1) == paper / 1e6


def _paper_rows() -> list:
    rows = []
    for (depth, width), paper in wrn.PAPER_PARAMS.items():
        name = f"wrn_{depth}_{width}"
        big = PINNED.get(name, paper) > LARGE
        rows.append(pytest.param(name, paper, marks=pytest.mark.slow) if big else (name, paper))
    return rows


@pytest.mark.parametrize(("name", "paper"), _paper_rows())
def test_table4_parameter_counts(name: str, paper: int) -> None:
    # Registered names use their pinned count (tests/test_zoo.py checks it against a build).
    ours = PINNED[name] if name in PINNED else tk.create_model(name).count_params()
    assert tk.get_model_info(name).paper_params == paper
    assert _near_paper(ours, paper), (name, ours, paper)


# Table 2 (k = 2, 10 classes): block type -> (our depth, the paper's count). The paper's depth
# there is 6n + 4 whatever the block, so its 3-conv "WRN-40-2" is our wrn_58_2, "WRN-22-2" wrn_31_2.
TABLE2 = {
    "B(1,3,1)": (58, 1_400_000),
    "B(3,1)": (40, 1_200_000),
    "B(1,3)": (40, 1_300_000),
    "B(3,1,1)": (58, 1_300_000),
    "B(3,3)": (28, 1_500_000),
    "B(3,1,3)": (31, 1_100_000),
}


@pytest.mark.parametrize("block_type", list(TABLE2))
def test_table2_block_types(block_type: str) -> None:
    depth, paper = TABLE2[block_type]
    model = tk.create_model(f"wrn_{depth}_2", block_type=block_type)
    assert _near_paper(_learnable(model), paper), (block_type, _learnable(model), paper)
    kernels = wrn.BLOCK_TYPES[block_type]
    convs = [model.get_layer(f"stage2_block2_conv{i}") for i in range(1, len(kernels) + 1)]
    assert tuple(c.kernel_size[0] for c in convs) == kernels
    assert all(c.filters == 64 for c in convs)  # every conv of a CIFAR block is 32k wide


@pytest.mark.parametrize("l", [1, 2, 3, 4])
def test_table3_deepening_factor_keeps_wrn_40_2_size(l: int) -> None:
    model = tk.create_model("wrn_40_2", l=l)
    assert _near_paper(_learnable(model), 2_200_000), (l, _learnable(model))
    n = 36 // (3 * l)
    model.get_layer(f"stage3_block{n}_conv{l}")
    with pytest.raises(ValueError):
        model.get_layer(f"stage3_block{n + 1}_conv1")


@pytest.mark.slow
def test_reference_learnable_counts() -> None:
    """WRN-28-10 as the authors' PyTorch code counts it; WRN-50-2 as torchvision's."""
    assert _learnable(tk.create_model("wrn_28_10")) == 36_479_194
    imagenet = tk.create_model("wide_resnet50_2")
    assert _learnable(imagenet) == 68_883_240
    assert _near_paper(imagenet.count_params(), wrn.IMAGENET_PAPER_PARAMS[(50, 2)])
    assert imagenet.get_layer("stage4_block3_conv2").filters == 1024  # 2x ResNet-50's 512
    assert imagenet.get_layer("stage4_block3_conv3").filters == 2048
    assert imagenet.get_layer("stage2_block1_conv2").strides == (2, 2)  # stride on the 3x3
    assert imagenet.get_layer("stage2_block1_shortcut_bn")
    assert imagenet.get_layer("stem_pool")
    assert imagenet.get_layer("stage4_block3_out_relu").output.shape[1:] == (7, 7, 2048)


def test_layout_and_layer_names() -> None:
    model = tk.create_model("wrn_16_4", input_shape=SMALL)
    for name in (
        "stem_conv", "stage1_block1_preact_bn", "stage1_block1_shortcut", "stage1_block1_conv1",
        "stage2_block1_conv1_pad", "stage3_block2_conv1", "stage3_block2_conv1_bn",
        "stage3_block2_conv2", "stage3_block2_add", "stage3_post_bn", "stage3_post_relu",
    ):
        model.get_layer(name)
    assert tk.transfer.stage_names(model) == ["stem", "stage1", "stage2", "stage3"]
    assert [model.get_layer(f"stage{s}_block1_conv1").filters for s in (1, 2, 3)] == [64, 128, 256]
    # Pre-activation: the stem is a bare conv and the last stage ends with BN-ReLU before pooling.
    assert not any(l.name.startswith("stem_bn") for l in model.layers)
    assert model.get_layer("head_pool").input is model.get_layer("stage3_post_relu").output
    assert model.get_layer("stage3_post_relu").output.shape[1:] == (8, 8, 256)
    # Identity shortcuts inside a stage, projections where width or stride changes.
    assert not any(l.name == "stage2_block2_shortcut" for l in model.layers)
    assert all(not l.use_bias for l in base_layers(model) if isinstance(l, keras.layers.Conv2D))
    # WRN-40-1's first block keeps 16 channels at stride 1: an identity shortcut.
    narrow = tk.create_backbone(SMALLEST, input_shape=SMALL)
    assert not any(l.name == "stage1_block1_shortcut" for l in narrow.layers)


def test_block_dropout_and_head_dropout_are_different_options() -> None:
    tuned = tk.create_model("wrn_16_4", block_dropout=0.3)
    drops = [l for l in tuned.layers if isinstance(l, keras.layers.Dropout)]
    assert [l.name for l in drops] == [f"stage{s}_block{b}_conv1_dropout" for s in (1, 2, 3) for b in (1, 2)]
    assert all(l.rate == 0.3 for l in drops)
    head_only = tk.create_model("wrn_16_4", dropout=0.3)
    assert [l.name for l in head_only.layers if isinstance(l, keras.layers.Dropout)] == ["head_dropout"]
    assert tuned.count_params() == head_only.count_params() == PINNED["wrn_16_4"]


def test_any_valid_depth_and_width_builds_by_name() -> None:
    # What the tuner does: compose the name from the searched depth and width.
    for depth, width in ((10, 1), (16, 2)):
        model = tk.create_model(f"wrn_{depth}_{width}", input_shape=SMALL, block_dropout=0.1)
        assert model.name == f"wrn_{depth}_{width}"
        assert model.get_layer("stage3_block1_conv2").filters == 64 * width
    assert tk.get_model_info("wrn_50_2_bottleneck").name == "wide_resnet50_2"


@pytest.mark.parametrize("spelling", ["B(3,1,3)", "3,1,3", "b(3, 1, 3)", "(3,1,3)", (3, 1, 3), [3, 1, 3]])
def test_block_type_aliases(spelling) -> None:
    assert wrn.block_kernels(spelling) == (3, 1, 3)


def test_bad_depth_names_the_rule_and_neighbours() -> None:
    with pytest.raises(tk.ConfigError, match=r"6n\+4.*got 27.*valid neighbours: 22, 28"):
        tk.create_model("wrn_27_10")
    with pytest.raises(tk.ConfigError, match=r"6n\+4"):
        tk.get_model_info("wrn_27_10")
    # 25 = 3*1*7 + 4 is a B(3) depth, so the name resolves, but not a B(3,3) one.
    with pytest.raises(tk.ConfigError, match=r"6n\+4.*got 25.*22, 28"):
        tk.create_model("wrn_25_10")
    with pytest.raises(tk.ConfigError, match=r"9n\+4.*got 28.*22, 31"):
        tk.create_model("wrn_28_2", block_type="B(3,1,3)")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("wrn_28_0", {}, "width k must be a positive integer"),
        ("wrn_28_10", {"depth": 16, "width": 2}, r"fixes depth=28.*wrn_16_2"),
        ("wrn_28_10", {"width": 4}, "fixes width=10"),
        ("wrn_16_4", {"block_type": "B(5,5)"}, "unknown WRN block_type"),
        ("wrn_40_2", {"block_type": "B(1,3,1)", "l": 2}, "only B\\(3,3\\) blocks take"),
        ("wrn_16_4", {"l": 0}, "positive integer"),
        ("wrn_16_4", {"block_dropout": 1.0}, r"block_dropout must be in \[0, 1\)"),
        ("wrn_16_4", {"input_shape": (2, 2, 3)}, "at least 4x4"),
        ("wide_resnet50_2", {"block_type": "B(3,3)"}, "bottleneck blocks"),
        ("wide_resnet60_2", {}, "depth must be one of 50, 101, 152"),
    ],
)
def test_invalid_combinations_raise(name: str, options: dict, message: str) -> None:
    with pytest.raises(tk.ConfigError, match=message):
        tk.create_model(name, **options)


def test_same_value_overrides_are_accepted() -> None:
    model = tk.create_backbone("wrn_16_4", input_shape=SMALL, depth=16, width=4)
    assert model.count_params() == tk.create_backbone("wrn_16_4", input_shape=SMALL).count_params()


# --- one residual block for ResNet and Wide ResNet ---------------------------------------------


@pytest.mark.parametrize("case", pinned_layer_cases("wide_resnet"))
def test_every_layer_keeps_its_name_type_place_and_shapes(case: dict) -> None:
    """Freezing by stage, weight loading and the tuner find layers by name and order; these
    builds (every block type, deepening factor, in-block dropout, WRN-50-2) keep theirs as
    pinned in tests/pinned/layers/wide_resnet.json."""
    model = tk.create_backbone(
        case["name"], input_shape=tuple(case["input_shape"]), **case["options"]
    )
    assert layer_lines(model) == case["layers"]


def _same_function(ours: keras.Model, reference: keras.Model, shape: tuple[int, int, int]) -> None:
    """With ``reference``'s weights (and BN epsilon), ``ours`` computes what ``reference`` does."""
    x = images(shape, 4)
    calibrate_batchnorm(reference, x)
    expected = reference(x)
    copy_weights_by_order(reference, ours)
    # Torch's epsilon (1e-5) against Keras ResNet's (1.001e-5) moves near-dead calibrated
    # channels by ~1e-3 over 50 layers; the structure is under test here, not the epsilon.
    def norms(model: keras.Model) -> list:
        return [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]

    for mine, theirs in zip(norms(ours), norms(reference), strict=True):
        mine.epsilon = theirs.epsilon
    assert_same(ours(x), expected, atol=1e-5)


def test_wrn_with_k1_is_the_preact_resnet_of_the_same_depth() -> None:
    """Table 1: k = 1 is the original network. WRN-10-1 and the pre-activation ResNet-8 with
    projection shortcuts (Identity Mappings) are the same layers and the same function, so a
    block change that reached one family and not the other fails here."""
    assert wrn.residual_block is rn.residual_block and not hasattr(wrn, "wide_block")
    inputs = keras.Input(SMALL)
    wide = keras.Model(inputs, wrn.wide_resnet(inputs, depth=10, width=1))
    resnet = keras.Model(
        inputs, rn.resnet(inputs, depth=8, dataset="cifar", block_order="full_preact")
    )
    assert layer_lines(wide) == layer_lines(resnet)
    _same_function(wide, resnet, SMALL)


def test_wrn_50_with_k1_is_resnet50_in_the_torchvision_layout() -> None:
    """Section 4: WRN-50-k widens only the inner convolutions of ResNet-50's post-activation
    bottlenecks, so at k = 1 it is ResNet-50 without conv biases and with the stride on the 3x3
    conv (torchvision's), block for block; the stems differ only in their padding layer's name."""
    inputs = keras.Input(IMAGENET_SMALL)
    wide = keras.Model(inputs, wrn.wide_resnet(inputs, depth=50, width=1, dataset="imagenet"))
    resnet = keras.Model(inputs, rn.resnet(inputs, depth=50, stride_in_3x3=True))

    def blocks(model: keras.Model) -> list[str]:
        return [line for line in layer_lines(model) if line.startswith("stage")]

    assert blocks(wide) == blocks(resnet)
    _same_function(wide, resnet, IMAGENET_SMALL)
