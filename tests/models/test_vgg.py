"""VGG A-E: Table 2 counts, Table 1 layouts, keras.applications VGG16/VGG19 weights.

Gradients, config and .keras round trips and freezing by stage: tests/test_zoo.py.
"""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

import keras
import transferkit as tk
from keras.src.legacy.saving import legacy_h5_format
from transferkit.models import weights as weights_lib
from transferkit.models import vgg
from zoo_helpers import images

SMALL = (32, 32, 3)
COMPAT = (64, 64, 3)
NAMES = [f"vgg_{config}" for config in vgg.CONFIGS]


# Table 2, millions (rounded); our exact counts at 224x224 with 1000 classes.
TABLE2 = {
    "vgg_a": (133, 132_863_336),
    "vgg_a_lrn": (133, 132_863_336),
    "vgg_b": (133, 133_047_848),
    "vgg_c": (134, 133_638_952),
    "vgg_d": (138, 138_357_544),
    "vgg_e": (144, 143_667_240),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_counts_against_table2(name: str) -> None:
    paper_millions, ours = TABLE2[name]
    model = tk.create_model(name)  # the one build at 224 per config in this file
    assert model.count_params() == ours
    assert round(ours / 1e6) == paper_millions == tk.get_model_info(name).paper_params / 1e6
    assert model.get_layer("stage5_pool").output.shape[1:] == (7, 7, 512)


def test_table1_layouts() -> None:
    """Weight layers per config (Table 1: 11, 11, 13, 16, 16, 19 with the three FC layers)."""
    depth = {"vgg_a": 11, "vgg_a_lrn": 11, "vgg_b": 13, "vgg_c": 16, "vgg_d": 16, "vgg_e": 19}
    for name in NAMES:
        backbone = tk.create_backbone(name, input_shape=SMALL)
        convs = [l for l in backbone.layers if isinstance(l, keras.layers.Conv2D)]
        assert len(convs) + 3 == depth[name], name
        assert all(l.name.startswith("stage") for l in backbone.layers[2:]), name
        if name == "vgg_c":
            ones = [l.name for l in convs if l.kernel_size == (1, 1)]
            assert ones == ["stage3_conv3", "stage4_conv3", "stage5_conv3"]
        else:
            assert all(l.kernel_size == (3, 3) for l in convs), name
        lrn = [l.name for l in backbone.layers if isinstance(l, tk.models.layers.LocalResponseNormalization)]
        assert lrn == (["stage1_lrn"] if name == "vgg_a_lrn" else []), name
    backbone = tk.create_backbone("vgg_a_lrn", input_shape=SMALL)
    names = [l.name for l in backbone.layers]
    assert names[2:5] == ["stage1_conv1", "stage1_lrn", "stage1_pool"]
    lrn = backbone.get_layer("stage1_lrn")
    assert (lrn.size, lrn.k, lrn.alpha, lrn.beta) == (5, 2.0, 1e-4, 0.75)


def test_aliases_heads_and_records() -> None:
    for alias, name in (("vgg11", "vgg_a"), ("vgg13", "vgg_b"), ("vgg16", "vgg_d"), ("vgg19", "vgg_e")):
        assert tk.get_model_info(alias).name == name
    for name in NAMES:
        info = tk.get_model_info(name)
        assert info.head == {"pooling": "flatten", "hidden_units": (4096, 4096), "dropout": 0.5}
        assert info.preprocessing == "caffe"
    assert tk.list_models("vgg*", pretrained=True) == ["vgg_d", "vgg_e"]
    base = "https://storage.googleapis.com/tensorflow/keras-applications/"
    for name, file, md5 in (
        ("vgg_d", "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "6d6bbae143d832006294945121d1f1fc"),
        ("vgg_e", "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "253f8cb515780f3b799900260a226db6"),
    ):
        record = weights_lib.get_record(name, "imagenet")
        assert record.url == base + file
        assert record.file_name == file.split("/")[1]
        assert (record.file_hash, record.preprocessing, record.num_classes) == (md5, "caffe", None)


def _compare_with_keras(reference: keras.Model, ours: keras.Model) -> None:
    raw = images(COMPAT)
    expected = np.asarray(reference(keras.applications.vgg16.preprocess_input(raw.copy())))
    np.testing.assert_allclose(np.asarray(ours(raw)), expected, atol=1e-4)
    assert expected.std() > 0


def test_vgg_d_takes_keras_vgg16_weights(tmp_path, monkeypatch) -> None:
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=COMPAT)
    ours = tk.create_backbone("vgg_d", input_shape=COMPAT)
    weights_lib.copy_weights_by_order(reference, ours)
    _compare_with_keras(reference, ours)

    # The published no-top file is a legacy .h5 of this layer order: write one from the
    # reference under the record's name and load it through the record into a fresh backbone.
    record = weights_lib.get_record("vgg_d", "imagenet")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    with h5py.File(tmp_path / "models" / record.file_name, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    fresh = tk.create_backbone("vgg_d", input_shape=COMPAT)
    weights_lib.load_into(fresh, dataclasses.replace(record, file_hash=None))
    _compare_with_keras(reference, fresh)


@pytest.mark.slow
def test_vgg_e_takes_keras_vgg19_weights() -> None:
    reference = keras.applications.VGG19(weights=None, include_top=False, input_shape=COMPAT)
    ours = tk.create_backbone("vgg_e", input_shape=COMPAT)
    weights_lib.copy_weights_by_order(reference, ours)
    _compare_with_keras(reference, ours)


def test_pretrained_weights_refuse_batch_norm() -> None:
    with pytest.raises(tk.ConfigError, match="batch_norm"):
        tk.create_backbone("vgg16", weights="imagenet", batch_norm=True)


def test_batch_norm_form() -> None:
    plain = tk.create_backbone("vgg_a", input_shape=SMALL)
    bn = tk.create_backbone("vgg_a", input_shape=SMALL, batch_norm=True)
    for name in ("stage1_conv1", "stage1_conv1_bn", "stage1_conv1_relu", "stage5_conv2_bn"):
        bn.get_layer(name)
    assert not bn.get_layer("stage3_conv2").use_bias
    convs = [l for l in plain.layers if isinstance(l, keras.layers.Conv2D)]
    # Each conv drops its bias (c) and gains gamma, beta, moving mean and variance (4c).
    assert bn.count_params() - plain.count_params() == sum(3 * l.filters for l in convs)
    y = np.asarray(bn(images(SMALL), training=False))
    assert y.shape == (2, 1, 1, 512) and np.isfinite(y).all()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("vgg_a", {"input_shape": (31, 31, 3)}),
        ("vgg_d", {"input_shape": (32, 16, 3)}),
        ("vgg_a", {"config": "f"}),
    ],
)
def test_invalid_combinations_raise(name: str, kwargs: dict) -> None:
    with pytest.raises(tk.ConfigError):
        tk.create_backbone(name, **{"input_shape": SMALL, **kwargs})
