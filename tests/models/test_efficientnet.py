"""EfficientNet B0-B7: paper parameter counts, keras.applications weight compatibility.

Gradients, config and .keras round trips and freezing by stage: tests/test_zoo.py.
"""

from __future__ import annotations


import h5py
import numpy as np
import pytest

import keras
import transferkit as tk
from transferkit.models.registry import parameter_counts
from transferkit.models import efficientnet as eff
from transferkit.models.weights import copy_weights_by_order, get_record
from zoo_helpers import assert_same, calibrate_batchnorm, images

SMALL = (32, 32, 3)
COMPAT = (64, 64, 3)
VARIANTS = list(eff.VARIANTS)
FAST = ("b0", "b1", "b2")
PINNED = parameter_counts()


def _params(variants: list[str], slow: tuple[str, ...]) -> list:
    return [pytest.param(v, marks=pytest.mark.slow) if v in slow else v for v in variants]


def _reference(variant: str, shape: tuple[int, int, int]) -> keras.Model:
    return getattr(keras.applications, f"EfficientNet{variant.upper()}")(
        weights=None, include_top=False, input_shape=shape
    )


def _as_keras_weights_none_graph(ours: keras.Model) -> None:
    """Drops our stem's std Rescaling, which Keras builds only for weights="imagenet".

    The stem normalisation of the two graphs is then the same op on the same (copied) weights,
    so the comparison covers every other layer bit for bit; the imagenet stem is checked on its
    own in test_stem_matches_keras_imagenet_stem.
    """
    ours.get_layer("stem_rescaling_std").scale = 1.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_against_paper(variant: str) -> None:
    # The pinned counts are create_model(name) at the default input (tests/test_zoo.py checks
    # them against a build), so this needs no build of its own.
    width, depth, size, dropout, paper = eff.VARIANTS[variant]
    name = f"efficientnet_{variant}"
    info = tk.get_model_info(name)
    assert info.input_shape == (size, size, 3) and info.head["dropout"] == dropout
    assert info.paper_params == paper
    ours = PINNED[name]
    # Table 2 prints millions with one decimal below 10M and whole millions above.
    decimals = 1 if paper < 10_000_000 else 0
    within = abs(ours - paper) / paper <= 0.02 or round(ours / 1e6, decimals) == paper / 1e6
    assert within, (name, ours, paper)


@pytest.mark.parametrize("variant", _params(VARIANTS, tuple(v for v in VARIANTS if v not in FAST)))
def test_matches_keras_applications(variant: str) -> None:
    ref = _reference(variant, COMPAT)
    ours = tk.create_backbone(f"efficientnet_{variant}", input_shape=COMPAT)
    x = images(COMPAT, 4)
    calibrate_batchnorm(ref, x)
    copy_weights_by_order(ref, ours)
    _as_keras_weights_none_graph(ours)
    assert_same(ours(x), ref(x))
    # Stochastic depth rates match layer for layer.
    ref_drops = [l.rate for l in ref.layers if isinstance(l, keras.layers.Dropout)]
    our_drops = [l.rate for l in ours.layers if isinstance(l, keras.layers.Dropout)]
    assert our_drops == pytest.approx(ref_drops)


def test_stem_matches_keras_imagenet_stem() -> None:
    """Ours, holding what the published files hold, normalises as Keras' weights="imagenet" stem."""
    mean, std = np.array(eff.IMAGENET_MEAN_RGB), np.array(eff.IMAGENET_STDDEV_RGB)
    keras_stem = keras.Sequential(
        [
            keras.layers.Rescaling(1.0 / 255.0),
            keras.layers.Normalization(mean=mean, variance=std),  # the files' "variance" is the std
            keras.layers.Rescaling([1.0 / np.sqrt(s) for s in std]),
        ]
    )
    ours = tk.create_backbone("efficientnet_b0", input_shape=SMALL)
    stem = keras.Model(ours.input, ours.get_layer("stem_rescaling_std").output)
    x = images(SMALL)
    np.testing.assert_allclose(np.asarray(stem(x)), np.asarray(keras_stem(x)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(stem(x)), (x / 255.0 - mean) / std, atol=1e-5)


def _save_legacy_h5(model: keras.Model, path) -> None:
    """Writes ``model``'s weights in the format of the published ``*_notop.h5`` files."""
    from keras.src.legacy.saving import legacy_h5_format  # no public writer of the old format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_published_file_format_loads_by_order(tmp_path) -> None:
    ref = _reference("b0", COMPAT)
    x = images(COMPAT, 4)
    norm = next(l for l in ref.layers if isinstance(l, keras.layers.Normalization))
    # What the published files hold: the ImageNet mean, and the std stored as "variance".
    norm.set_weights([np.array(eff.IMAGENET_MEAN_RGB), np.array(eff.IMAGENET_STDDEV_RGB), np.array(0)])
    norm.finalize_state()  # Keras' Normalization caches its statistics; set_weights alone is unseen
    calibrate_batchnorm(ref, x)
    path = tmp_path / "efficientnetb0_notop.h5"
    _save_legacy_h5(ref, path)
    ours = tk.create_backbone("efficientnet_b0", input_shape=COMPAT)
    ours.get_layer("stem_normalization").set_weights([np.zeros(3), np.ones(3), np.array(0)])
    tk.models.weights.load_into(ours, path)  # by order, as a pretrained record's file
    theirs = [w for l in ref.layers for w in l.get_weights()]
    mine = [w for l in ours.layers for w in l.get_weights()]
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        np.testing.assert_array_equal(a, b)
    _as_keras_weights_none_graph(ours)
    assert_same(ours(x), ref(x))


@pytest.mark.parametrize("variant", VARIANTS)
def test_pretrained_records_as_keras_publishes_them(variant: str) -> None:
    record = get_record(f"efficientnet_{variant}", "imagenet")
    assert record.file_name == f"efficientnet{variant}_notop.h5"
    assert record.url == "https://storage.googleapis.com/keras-applications/" + record.file_name
    from keras.src.applications.efficientnet import WEIGHTS_HASHES

    assert record.file_hash == WEIGHTS_HASHES[variant][1]
    assert record.preprocessing == "none" and record.num_classes is None
    assert record.input_size == eff.VARIANTS[variant][2]


def test_scaling_rules() -> None:
    assert [eff.round_filters(c, 1.1) for c in (32, 16, 24, 40, 80, 112, 192, 320, 1280)] == [
        32, 16, 24, 48, 88, 120, 208, 352, 1408,
    ]
    assert [eff.round_repeats(n, 3.1) for n in (1, 2, 3, 4)] == [4, 7, 10, 13]
    assert eff.correct_pad(keras.Input((64, 64, 3)), 3) == ((0, 1), (0, 1))
    assert eff.correct_pad(keras.Input((65, 65, 3)), 5) == ((2, 2), (2, 2))


def test_layer_names_and_stages() -> None:
    model = tk.create_model("efficientnet_b0", input_shape=SMALL)
    for name in (
        "stem_rescaling", "stem_normalization", "stem_rescaling_std", "stem_conv_pad", "stem_conv",
        "stem_bn", "stem_activation", "stage1_block1_dwconv", "stage1_block1_se_reduce",
        "stage1_block1_project_conv", "stage2_block1_expand_conv", "stage2_block1_dwconv_pad",
        "stage2_block2_drop", "stage2_block2_add", "stage6_block4_se_excite", "stage7_block1_project_bn",
        "stage8_conv", "stage8_bn", "stage8_activation", "head_pool", "head_dropout", "predictions",
    ):
        model.get_layer(name)
    assert tk.transfer.stage_names(model) == ["stem"] + [f"stage{i}" for i in range(1, 9)]
    assert [b for b in tk.transfer.block_names(model)][-1] == "stage7_block1"
    assert len(tk.transfer.block_names(model)) == 16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (31, 31, 3)}, "at least 32x32"),
        ({"input_shape": SMALL, "width": 0.0}, "width > 0"),
        ({"input_shape": SMALL, "depth": -1.0}, "depth > 0"),
        ({"input_shape": SMALL, "drop_connect_rate": 1.0}, "drop_connect_rate"),
        ({"input_shape": SMALL, "se_ratio": 1.5}, "se_ratio"),
        ({"input_shape": (32, 32, 1)}, "3 channels"),
        ({"input_shape": SMALL, "aux_outputs": True}, "no auxiliary"),
        ({"input_shape": SMALL, "weights": "imagenet", "width": 1.2}, "overrides"),
    ],
)
def test_invalid_combinations_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(tk.ConfigError, match=message):
        tk.create_model("efficientnet_b0", **kwargs)


def test_se_ratio_zero_drops_squeeze_excite() -> None:
    model = tk.create_backbone("efficientnet_b0", input_shape=SMALL, se_ratio=0.0, drop_connect_rate=0.0)
    names = [l.name for l in model.layers]
    assert not any("_se_" in n or n.endswith("_drop") for n in names)
