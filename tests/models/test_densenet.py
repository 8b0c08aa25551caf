"""DenseNet: Keras weight compatibility, paper Table 1/2 counts, layouts, errors.

Gradients, config and .keras round trips and freezing by stage: tests/test_zoo.py.
"""

from __future__ import annotations


import pytest

import keras
import transferkit as tk
from transferkit.models.registry import parameter_counts
from keras.src.applications import densenet as keras_densenet
from transferkit.models import densenet as dn
from transferkit.models.weights import copy_weights_by_order, get_record
from zoo_helpers import assert_same, calibrate_batchnorm, images

SMALL = (32, 32, 3)
COMPAT = (64, 64, 3)
PINNED = parameter_counts()


@pytest.mark.parametrize(
    "depth", [121, pytest.param(169, marks=pytest.mark.slow), pytest.param(201, marks=pytest.mark.slow)]
)
def test_matches_keras_applications(depth: int) -> None:
    ref = getattr(keras.applications, f"DenseNet{depth}")(
        weights=None, include_top=False, input_shape=COMPAT
    )
    ours = tk.create_backbone(f"densenet{depth}", input_shape=COMPAT)
    x = images(COMPAT, 4)
    ref_x = keras.applications.densenet.preprocess_input(x.copy())
    calibrate_batchnorm(ref, ref_x)
    copy_weights_by_order(ref, ours)
    assert_same(ours(x), ref(ref_x))
    # Same BN epsilon everywhere, same number of weights.
    assert {l.epsilon for l in ours.layers if isinstance(l, keras.layers.BatchNormalization)} == {1.001e-5}
    assert ours.count_params() == ref.count_params()
    blocks = dn.IMAGENET_BLOCKS[depth]
    for s, n in enumerate(blocks, start=1):
        ours.get_layer(f"stage{s}_block{n}_concat")
        if s > 1:
            for op in ("bn", "relu", "conv", "pool"):
                ours.get_layer(f"stage{s}_transition_{op}")
    for name in ("stem_conv", "stem_bn", "stem_relu", "stem_pool", "stage3_block2_conv1",
                 "stage3_block2_conv1_bn", "stage3_block2_conv2", "stage4_post_bn", "stage4_post_relu"):
        ours.get_layer(name)


def test_pretrained_records_are_keras_files() -> None:
    expected = {
        121: (keras_densenet.DENSENET121_WEIGHT_PATH_NO_TOP, "30ee3e1110167f948a6b9946edeeb738"),
        169: (keras_densenet.DENSENET169_WEIGHT_PATH_NO_TOP, "b8c4d4c20dd625c148057b9ff1c1176b"),
        201: (keras_densenet.DENSENET201_WEIGHT_PATH_NO_TOP, "c13680b51ded0fb44dff2d8f86ac8bb1"),
    }
    for depth, (url, file_hash) in expected.items():
        record = get_record(f"densenet{depth}", "imagenet")
        assert record.url == url and record.file_hash == file_hash
        assert record.file_name == url.rsplit("/", 1)[1]
        assert record.preprocessing == "torch" and record.num_classes is None
        assert tk.get_model_info(f"densenet{depth}").preprocessing == "torch"
    assert tk.list_models("densenet*", pretrained=True) == ["densenet121", "densenet169", "densenet201"]


def test_pretrained_refuses_architecture_overrides() -> None:
    with pytest.raises(tk.ConfigError, match="growth_rate"):
        tk.create_backbone("densenet121", weights="imagenet", growth_rate=16)


def test_missing_pretrained_file_names_it(empty_keras_home) -> None:
    with pytest.raises(tk.WeightsError, match="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        tk.create_backbone("densenet121", weights="imagenet", input_shape=COMPAT)


def _near_paper(ours: int, paper: int) -> bool:
    """Within 2%, or equal at the paper's rounding (millions, one decimal)."""
    return abs(ours - paper) / paper <= 0.02 or round(ours / 1e6, 1) == paper / 1e6


@pytest.mark.parametrize("name", list(dn.VARIANTS))
def test_parameter_counts_against_paper(name: str) -> None:
    # Pinned counts are create_model(name) builds (checked by tests/test_zoo.py), no build here.
    paper = dn.VARIANTS[name][1]
    assert tk.get_model_info(name).paper_params == paper
    assert _near_paper(PINNED[name], paper), (name, PINNED[name], paper)


@pytest.mark.parametrize(
    ("name", "stem", "per_block", "channels"),
    [
        # DenseNet (L=40, k=12): 16-filter stem, (40-4)/3 = 12 layers per block, theta = 1.
        ("densenet40_k12", 16, 12, (160, 160 + 144, 304 + 144)),
        # DenseNet-BC (L=100, k=12): 2k stem, (100-4)/6 = 16 layers, transitions halve.
        ("densenet_bc100_k12", 24, 16, (24 + 192, 108 + 192, 150 + 192)),
    ],
)
def test_cifar_layout(name: str, stem: int, per_block: int, channels: tuple[int, ...]) -> None:
    model = tk.create_backbone(name, input_shape=SMALL)
    assert model.get_layer("stem_conv").filters == stem
    assert model.get_layer("stem_conv").kernel_size == (3, 3)
    assert not any(l.name in ("stem_bn", "stem_pool") for l in model.layers)
    outs = [model.get_layer(f"stage{s}_block{per_block}_concat").output.shape[1:] for s in (1, 2, 3)]
    assert outs == [(32, 32, channels[0]), (16, 16, channels[1]), (8, 8, channels[2])]
    assert not any(l.name == f"stage1_block{per_block + 1}_concat" for l in model.layers)
    bottleneck = name.startswith("densenet_bc")
    assert any(l.name == "stage1_block1_conv2" for l in model.layers) == bottleneck
    if bottleneck:
        assert model.get_layer("stage1_block1_conv1").filters == 4 * 12
    assert model.output.shape[1:] == (8, 8, channels[2])
    assert tk.transfer.stage_names(model) == ["stem", "stage1", "stage2", "stage3"]


def test_pattern_names_and_options() -> None:
    model = tk.create_backbone("densenet_bc16_k4", input_shape=SMALL)  # (16-4)/6 = 2 layers
    assert model.get_layer("stage3_block2_conv2").filters == 4
    assert not any(l.name == "stage3_block3_concat" for l in model.layers)
    custom = tk.create_backbone(
        "densenet121", input_shape=SMALL, blocks=(1, 2), growth_rate=8, compression=0.25,
        block_dropout=0.2,
    )
    assert custom.get_layer("stem_conv").filters == 16  # 2k
    assert custom.get_layer("stage2_transition_conv").filters == int((16 + 8) * 0.25)
    drops = [l.name for l in custom.layers if isinstance(l, keras.layers.Dropout)]
    assert drops == [
        "stage1_block1_conv1_dropout", "stage1_block1_conv2_dropout", "stage2_transition_dropout",
        "stage2_block1_conv1_dropout", "stage2_block1_conv2_dropout",
        "stage2_block2_conv1_dropout", "stage2_block2_conv2_dropout",
    ]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("densenet_bc101_k12", {}, r"6n\+4.*got 101"),
        ("densenet41_k12", {}, r"3n\+4.*got 41"),
        ("densenet40_k12", {"depth": 41}, r"3n\+4.*got 41"),
        ("densenet40_k0", {}, "growth rate must be >= 1"),
        ("densenet_bc100_k12", {"growth_rate": 0}, "growth_rate must be an integer >= 1"),
        ("densenet_bc100_k12", {"compression": 0.0}, r"compression must be in \(0, 1\]"),
        ("densenet_bc100_k12", {"compression": 1.5}, r"compression must be in \(0, 1\]"),
        ("densenet_bc100_k12", {"block_dropout": -0.1}, r"block_dropout must be in \[0, 1\)"),
        ("densenet121", {"depth": 122}, "valid: 121, 169, 201, 264"),
        ("densenet121", {"blocks": (6, 0)}, "layer counts >= 1"),
        ("densenet121", {"dataset": "svhn"}, "unknown DenseNet dataset"),
        ("densenet121", {"input_shape": (16, 16, 3)}, "at least 32x32"),
        ("densenet40_k12", {"input_shape": (2, 2, 3)}, "at least 4x4"),
    ],
)
def test_invalid_combinations_raise(name: str, options: dict, message: str) -> None:
    with pytest.raises(tk.ConfigError, match=message):
        tk.create_model(name, **options)
