"""ResNet: paper parameter counts, keras.applications weight compatibility, block orders, shortcut
options, plain networks and invalid combinations.

Gradients, config and .keras round trips and freezing by stage: tests/test_zoo.py.
"""

from __future__ import annotations


import h5py
import keras
import numpy as np
import pytest

import transferkit as tk
from transferkit.models.registry import parameter_counts
from transferkit.models import resnet as rn
from transferkit.transfer import base_layers, block_names, stage_names
from transferkit.models.weights import copy_weights_by_order, get_record
from zoo_helpers import (
    assert_gradients_reach_every_weight,
    assert_same,
    calibrate_batchnorm,
    images,
    layer_lines,
    pinned_layer_cases,
)

SMALL = (32, 32, 3)
COMPAT = (64, 64, 3)
PINNED = parameter_counts()


# --- parameter counts -------------------------------------------------------------------------

PAPER_NAMES = [n for n, v in rn.VARIANTS.items() if v[1] is not None]


def _tolerance(paper: int) -> float:
    """2 % or half a unit of the figure's last published digit (1.7M: 50k), whichever is larger."""
    unit = 1
    while paper % (unit * 10) == 0:
        unit *= 10
    return max(0.02 * paper, unit / 2)


@pytest.mark.parametrize("name", PAPER_NAMES)
def test_parameter_count_against_paper(name: str) -> None:
    """Our pinned counts beside the papers' figures (tests/test_zoo.py builds every name and
    asserts it has its pinned count, so the table is not built twice; resnet1202 alone takes
    ~45 s)."""
    info = tk.get_model_info(name)
    ours, paper = PINNED[name], info.paper_params
    assert abs(ours - paper) <= _tolerance(paper), (name, ours, paper)


def test_option_a_and_plain_add_no_parameters() -> None:
    """Paper section 4.1: option A shortcuts are parameter-free, so plain and residual nets
    compare at equal size; B adds the two stage-entry projections (conv + BN)."""
    a = tk.create_model("resnet20").count_params()
    assert tk.create_model("resnet20", plain=True).count_params() == a
    b = tk.create_model("resnet20", shortcut="B").count_params()
    assert b - a == (16 * 32 + 32 * 64) + 4 * (32 + 64)
    c = tk.create_model("resnet20", shortcut="C").count_params()
    assert c > b


# --- keras.applications compatibility ----------------------------------------------------------

COMPAT_CASES = [
    ("resnet50", "ResNet50", "resnet", False),
    ("resnet50v2", "ResNet50V2", "resnet_v2", False),
    ("resnet101", "ResNet101", "resnet", True),
    ("resnet152", "ResNet152", "resnet", True),
    ("resnet101v2", "ResNet101V2", "resnet_v2", True),
    ("resnet152v2", "ResNet152V2", "resnet_v2", True),
]


def _save_legacy_h5(model: keras.Model, path) -> None:
    """Writes ``model``'s weights in the format of the published ``*_notop.h5`` files."""
    from keras.src.legacy.saving import legacy_h5_format  # no public writer of the old format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def _check_published_format(ref, name, x, expected, tmp_path) -> None:
    """``ref``'s weights, written as Keras publishes them, load into a fresh backbone by order
    (as a pretrained record's file loads) and give ``expected``."""
    path = tmp_path / f"{name}_notop.h5"
    _save_legacy_h5(ref, path)
    fresh = tk.create_backbone(name, input_shape=COMPAT)
    tk.models.weights.load_into(fresh, path)
    assert_same(fresh(x), expected)


@pytest.mark.parametrize(
    ("name", "keras_name", "module"),
    [pytest.param(*c[:3], marks=pytest.mark.slow) if c[3] else c[:3] for c in COMPAT_CASES],
)
def test_matches_keras_applications(name: str, keras_name: str, module: str, tmp_path) -> None:
    ref = getattr(keras.applications, keras_name)(
        weights=None, include_top=False, input_shape=COMPAT
    )
    preprocess = getattr(keras.applications, module).preprocess_input
    x = images(COMPAT, 4)
    calibrate_batchnorm(ref, preprocess(x.copy()))
    expected = ref(preprocess(x.copy()))

    ours = tk.create_backbone(name, input_shape=COMPAT)
    copy_weights_by_order(ref, ours)
    assert_same(ours(x), expected)

    if not name.startswith(("resnet101", "resnet152")):  # file format: once per layout
        _check_published_format(ref, name, x, expected, tmp_path)


@pytest.mark.parametrize("name", list(rn._NOTOP_HASHES))
def test_pretrained_records_as_keras_publishes_them(name: str) -> None:
    from keras.src.applications.resnet import BASE_WEIGHTS_PATH, WEIGHTS_HASHES

    record = get_record(name, "imagenet")
    assert record.file_name == f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert record.url == BASE_WEIGHTS_PATH + record.file_name
    assert record.file_hash == WEIGHTS_HASHES[name][1]
    assert record.preprocessing == ("tf" if name.endswith("v2") else "caffe")
    assert record.num_classes is None and record.input_size == 224
    assert tk.get_model_info(name).preprocessing == record.preprocessing


# --- structure -------------------------------------------------------------------------------


def test_layer_names_stages_and_shapes() -> None:
    model = tk.create_model("resnet50", input_shape=COMPAT)
    for name in (
        "stem_pad", "stem_conv", "stem_bn", "stem_relu", "stem_pool_pad", "stem_pool",
        "stage1_block1_shortcut", "stage1_block1_shortcut_bn", "stage3_block1_shortcut",
        "stage3_block2_conv1", "stage3_block2_conv1_bn", "stage3_block2_conv1_relu",
        "stage3_block2_conv3_bn", "stage3_block2_add", "stage3_block2_out_relu", "head_pool",
        "predictions",
    ):
        model.get_layer(name)
    base = [l.name for l in base_layers(model) if l.name != "preprocess"]
    assert all(n.startswith(("stem", "stage")) for n in base)
    assert stage_names(model) == list(tk.get_model_info("resnet50").stages)
    assert len(block_names(model)) == 16
    assert model.get_layer("stage4_block3_out_relu").output.shape[1:] == (2, 2, 2048)
    # Keras v1 layout: the stage's stride is on the first 1x1 conv, every conv has a bias.
    assert model.get_layer("stage2_block1_conv1").strides == (2, 2)
    assert all(l.use_bias for l in model.layers if isinstance(l, keras.layers.Conv2D))

    cifar = tk.create_model("resnet20", shortcut="C")
    cifar.get_layer("stage3_block2_shortcut")
    assert stage_names(cifar) == ["stem", "stage1", "stage2", "stage3"]
    assert cifar.get_layer("stage3_block3_out_relu").output.shape[1:] == (8, 8, 64)
    assert not any(l.use_bias for l in cifar.layers if isinstance(l, keras.layers.Conv2D))


@pytest.mark.parametrize("case", pinned_layer_cases("resnet"))
def test_every_layer_keeps_its_name_type_place_and_shapes(case: dict) -> None:
    """Freezing by stage, weight loading and the tuner find layers by name and order; these
    builds (every block order, shortcut option, plain, bias and stride layout) keep theirs as
    pinned in tests/pinned/layers/resnet.json."""
    model = tk.create_backbone(
        case["name"], input_shape=tuple(case["input_shape"]), **case["options"]
    )
    assert layer_lines(model) == case["layers"]


def test_v2_and_preact_layouts_differ_as_documented() -> None:
    v2 = tk.create_backbone("resnet50v2", input_shape=SMALL)
    pre = tk.create_backbone("preact_resnet50", input_shape=SMALL)
    # Keras V2: stride on the 3x3 conv of the last block of a stage; the strided identity is a
    # subsampling shortcut; a final BN-ReLU closes the last stage.
    assert v2.get_layer("stage1_block3_conv2").strides == (2, 2)
    assert isinstance(v2.get_layer("stage1_block3_shortcut"), rn.ZeroPadShortcut)
    assert v2.get_layer("stage2_block1_conv2").strides == (1, 1)
    for model in (v2, pre):
        model.get_layer("stage4_post_bn")
        model.get_layer("stage4_post_relu")
        model.get_layer("stage2_block2_preact_bn")
        assert "stem_bn" not in [l.name for l in model.layers]
    # The paper's pre-activation ResNet: the stage's first block strides, on its 3x3 conv.
    assert pre.get_layer("stage2_block1_conv2").strides == (2, 2)
    assert pre.get_layer("stage2_block1_conv1").strides == (1, 1)
    assert v2.output.shape[1:] == pre.output.shape[1:] == (1, 1, 2048)


# Identity Mappings Fig. 4: layers a block has, and ones it must not have.
BLOCK_ORDER_CASES = {
    "original": (
        ["stem_bn", "stem_relu", "b_conv2_bn", "b_add", "b_out_relu"],
        ["b_preact_bn", "b_out_bn", "b_conv2_relu", "stage3_post_bn"],
    ),
    "bn_after_add": (
        ["stem_bn", "stem_relu", "b_add", "b_out_bn", "b_out_relu"],
        ["b_conv2_bn", "b_preact_relu"],
    ),
    "relu_before_add": (
        ["stem_bn", "stem_relu", "b_conv2_bn", "b_conv2_relu", "b_add"],
        ["b_out_relu", "b_out_bn", "b_preact_relu"],
    ),
    "relu_preact": (
        ["stem_bn", "b_preact_relu", "b_conv2_bn", "b_add", "stage3_post_relu"],
        ["stem_relu", "b_preact_bn", "b_out_relu", "stage3_post_bn"],
    ),
    "full_preact": (
        ["b_preact_bn", "b_preact_relu", "b_conv1_bn", "b_add", "stage3_post_bn",
         "stage3_post_relu"],
        ["stem_bn", "stem_relu", "b_conv2_bn", "b_out_relu"],
    ),
}


@pytest.mark.parametrize("order", list(rn.BLOCK_ORDERS))
def test_block_orders(order: str) -> None:
    present, absent = BLOCK_ORDER_CASES[order]
    model = tk.create_model("resnet20", num_classes=3, block_order=order)
    names = {l.name for l in model.layers}
    for name in present:
        assert name.replace("b_", "stage2_block2_", 1) in names, (order, name)
    for name in absent:
        assert name.replace("b_", "stage2_block2_", 1) not in names, (order, name)
    # The sequence of one block is the figure's.
    block = [l for l in model.layers if l.name.startswith("stage2_block2_")]
    kinds = [
        {"Conv2D": "conv", "BatchNormalization": "bn", "Activation": "relu", "Add": "add"}[
            type(l).__name__
        ]
        for l in block
    ]
    assert kinds == {
        "original": ["conv", "bn", "relu", "conv", "bn", "add", "relu"],
        "bn_after_add": ["conv", "bn", "relu", "conv", "add", "bn", "relu"],
        "relu_before_add": ["conv", "bn", "relu", "conv", "bn", "relu", "add"],
        "relu_preact": ["relu", "conv", "bn", "relu", "conv", "bn", "add"],
        "full_preact": ["bn", "relu", "conv", "bn", "relu", "conv", "add"],
    }[order]
    y = np.asarray(model(images(SMALL), training=False))
    assert np.isfinite(y).all()


def test_plain_network_has_no_shortcuts() -> None:
    model = tk.create_model("resnet18", input_shape=SMALL, plain=True)
    assert not any(isinstance(l, keras.layers.Add) for l in model.layers)
    assert not any("shortcut" in l.name for l in model.layers)
    assert model.count_params() < tk.create_model("resnet18", input_shape=SMALL).count_params()


def test_zero_pad_shortcut_subsamples_and_pads() -> None:
    x = np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    y = np.asarray(rn.ZeroPadShortcut(2, 5)(x))
    assert y.shape == (2, 2, 2, 5)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 3:], 0.0)


def test_pattern_names() -> None:
    info = tk.get_model_info("resnet26")
    assert info.kwargs["depth"] == 26 and info.kwargs["dataset"] == "cifar"
    assert info.paper_classes == 10 and info.input_shape == SMALL
    assert tk.get_model_info("resnet200").kwargs == {"depth": 200}  # Identity Mappings, ImageNet
    assert tk.get_model_info("resnet50_v2").name == "resnet50v2"
    assert tk.get_model_info("preresnet164").name == "preact_resnet164"
    by_override = tk.create_model("resnet20", depth=26).count_params()
    assert by_override == tk.create_model("resnet26").count_params()


# --- training behaviour ----------------------------------------------------------------------


def test_gradients_reach_every_weight_of_full_preact_option_c() -> None:
    model = tk.create_model("resnet20", num_classes=3, block_order="full_preact", shortcut="C")
    assert_gradients_reach_every_weight(model, images(SMALL))


# --- invalid combinations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("resnet20", {"shortcut": "D"}, "shortcut 'D'; valid: A, B, C"),
        ("resnet50", {"block_order": "preact"}, "block_order 'preact'"),
        ("resnet20", {"depth": 21}, "6n\\+2"),
        ("resnet20", {"depth": "20"}, "must be an integer"),
        ("resnet20", {"depth": 29}, "6n\\+2"),
        ("preact_resnet164", {"depth": 110 + 1}, "9n\\+2"),
        ("resnet20", {"plain": True, "shortcut": "C"}, "plain=True"),
        ("resnet50", {"depth": 42}, "no ImageNet ResNet of depth 42"),
        ("resnet18", {"bottleneck": True}, "basic blocks"),
        ("resnet20", {"dataset": "svhn"}, "dataset 'svhn'"),
        ("resnet20", {"conv_bias": "some"}, "conv_bias"),
        ("resnet20", {"downsample_at": "middle"}, "downsample_at"),
        ("resnet50", {"input_shape": (31, 31, 3)}, "at least 32x32"),
        ("resnet20", {"input_shape": (3, 3, 3)}, "at least 4x4"),
        ("resnet50", {"weights": "imagenet", "shortcut": "A"}, "overrides"),
    ],
)
def test_invalid_combinations_raise(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(tk.ConfigError, match=message):
        tk.create_model(name, **kwargs)


def test_invalid_pattern_depth_and_small_input_in_builder() -> None:
    with pytest.raises(tk.ConfigError, match="6n\\+2"):
        tk.get_model_info("resnet21")
    with pytest.raises(tk.ConfigError, match="at least 32x32"):
        rn.resnet(keras.Input((16, 16, 3)), depth=18)


def test_no_weights_for_paper_only_variants() -> None:
    with pytest.raises(tk.WeightsError, match="no 'imagenet' weights are published for resnet18"):
        tk.create_model("resnet18", weights="imagenet")
