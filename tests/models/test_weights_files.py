"""Every weights file keras.applications publishes for a registered family loads by
``weights=PATH``, with and without its top, through the one weights road
(:func:`transferkit.models.weights.load_into`), and our model then computes what
keras.applications computes.

The published files need a download, so each case writes its own in the published format (the
legacy HDF5 layout, ``keras.src.legacy.saving.legacy_h5_format``) from keras.applications' model
built with ``weights=None`` and BatchNormalization statistics calibrated on the test images (at
initialisation they are 0 and 1, and deep outputs vanish). The headless file is written from the
same model without its top layers, which are the layers of ``include_top=False`` (checked once per
family below), so one reference build serves both files.

Keras 3 files (``.weights.h5``, ``.keras``) and the errors of files that do not fit are at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pytest

import transferkit as tk
from transferkit.models import efficientnet as eff
from transferkit.models.head import is_head_layer
from transferkit.models.weights import load_into
from zoo_helpers import assert_same, calibrate_batchnorm, images

COMPAT = (64, 64, 3)

# registry name, keras.applications constructor, its arguments, module of its preprocess_input
FAST = [
    ("mobilenet_v1_025", "MobileNet", {"alpha": 0.25}, "mobilenet"),
    ("mobilenet_v1_050", "MobileNet", {"alpha": 0.5}, "mobilenet"),
    ("mobilenet_v1_075", "MobileNet", {"alpha": 0.75}, "mobilenet"),
    ("mobilenet_v1_100", "MobileNet", {"alpha": 1.0}, "mobilenet"),
    ("resnet50", "ResNet50", {}, "resnet"),
    ("resnet50v2", "ResNet50V2", {}, "resnet_v2"),
    ("vgg16", "VGG16", {}, "vgg16"),
    ("densenet121", "DenseNet121", {}, "densenet"),
    ("efficientnet_b0", "EfficientNetB0", {}, "efficientnet"),
]
# Each case builds keras.applications' model and ours; the file layout is checked once per
# family (all four MobileNet widths: the 1x1-convolution top is theirs), plus VGG19 and a deeper
# ResNet here and VGG16's top at 224 below. ResNet101V2/152/152V2, DenseNet169/201 and
# EfficientNet B1-B7 would add about ten minutes of CPU; their layer order and shapes equal
# keras.applications' in the family tests (copy_weights_by_order, the same by-order pairing as a
# legacy .h5 file's).
SLOW = [
    ("resnet101", "ResNet101", {}, "resnet"),
    ("vgg19", "VGG19", {}, "vgg19"),
]
CASES = {case[0]: case for case in FAST + SLOW}
ALL = [case[0] for case in FAST] + [pytest.param(case[0], marks=pytest.mark.slow) for case in SLOW]


def _reference(name: str, include_top: bool, shape: tuple[int, int, int] = COMPAT) -> keras.Model:
    _, constructor, kwargs, _ = CASES[name]
    extra = {"classifier_activation": None} if include_top else {}
    return getattr(keras.applications, constructor)(
        weights=None, include_top=include_top, input_shape=shape, **kwargs, **extra
    )


def _preprocess(name: str, x: np.ndarray) -> np.ndarray:
    return getattr(keras.applications, CASES[name][3]).preprocess_input(x.copy())


# The last layer of keras.applications' base, by preprocess module (the family).
BASE_OUTPUT = {
    "mobilenet": "conv_pw_13_relu",
    "resnet": "conv5_block3_out",
    "resnet_v2": "post_relu",
    "vgg16": "block5_pool",
    "vgg19": "block5_pool",
    "densenet": "relu",
    "efficientnet": "top_activation",
}


def _headless(name: str, reference: keras.Model) -> keras.Model:
    """``reference`` without its top: the layers of ``include_top=False``."""
    return keras.Model(reference.input, reference.get_layer(BASE_OUTPUT[CASES[name][3]]).output)


def _write_h5(model: keras.Model, path: Path) -> Path:
    """``model``'s weights as keras.applications publishes its files (no public writer of it)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def _as_published_efficientnet(reference: keras.Model) -> None:
    """What the published EfficientNet files hold in the stem: the ImageNet mean, and the std
    stored as the Normalization "variance"."""
    norm = next(l for l in reference.layers if isinstance(l, keras.layers.Normalization))
    norm.set_weights([np.array(eff.IMAGENET_MEAN_RGB), np.array(eff.IMAGENET_STDDEV_RGB), np.array(0)])
    norm.finalize_state()  # Normalization caches its statistics; set_weights alone is unseen


def _as_keras_graph(ours: keras.Model) -> keras.Model:
    """Keras builds EfficientNet's last stem Rescaling (1/sqrt(std)) only for
    weights="imagenet"; with ``weights=None`` the reference has none, so ours skips it too (see
    tests/models/test_efficientnet.py for the stem against the imagenet one)."""
    if any(layer.name == "stem_rescaling_std" for layer in ours.layers):
        ours.get_layer("stem_rescaling_std").scale = 1.0
    return ours


@dataclass(frozen=True)
class Published:
    """keras.applications' files for one model, and what its model computes on ``x``."""

    x: np.ndarray
    top: Path
    no_top: Path
    logits: np.ndarray
    pre_logits: np.ndarray  # the input of the classifier layer (flattened)
    features: np.ndarray  # the base's feature map


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``published(name)``: the files and outputs of keras.applications' model, built once."""
    made: dict[str, Published] = {}

    def make(name: str) -> Published:
        if name not in made:
            folder = tmp_path_factory.mktemp(name)
            keras.utils.set_random_seed(1)
            reference = _reference(name, include_top=True)
            if name.startswith("efficientnet"):
                _as_published_efficientnet(reference)
            x = images(COMPAT, 4)
            ref_x = _preprocess(name, x)
            calibrate_batchnorm(reference, ref_x)
            headless = _headless(name, reference)
            classifier = [l for l in reference.layers if l.weights][-1]
            outputs = keras.Model(reference.input, [reference.output, classifier.input, headless.output])
            logits, pre_logits, features = (np.asarray(y) for y in outputs(ref_x))
            made[name] = Published(
                x=x,
                top=_write_h5(reference, folder / f"{name}_top.h5"),
                no_top=_write_h5(headless, folder / f"{name}_no_top.h5"),
                logits=logits,
                pre_logits=pre_logits.reshape(len(x), -1),
                features=features,
            )
        return made[name]

    return make


def _assert_same(actual: Any, expected: np.ndarray) -> None:
    """allclose (atol 1e-4) on outputs that vary over the batch by at least 1% of their size
    (randomly initialised VGG maps every noise image to nearly the same small output)."""
    expected = np.asarray(expected)
    assert expected.std(axis=0).mean() > 1e-2 * np.abs(expected).mean() > 0
    np.testing.assert_allclose(np.asarray(actual), expected, atol=1e-4)


def _up_to_predictions(model: keras.Model) -> keras.Model:
    return keras.Model(model.input, model.get_layer("predictions").input)


def _features_and_output(model: keras.Model) -> keras.Model:
    """``model`` with its base's feature map (the input of its first head layer) as an output."""
    first = next(layer for layer in model.layers if is_head_layer(layer))
    return keras.Model(model.input, [first.input, model.output])


# --- the files keras.applications publishes ---------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_published_files_load_with_and_without_top(name: str, published: Any) -> None:
    files = published(name)
    ours = tk.create_model(
        name, num_classes=1000, weights=str(files.top), input_shape=COMPAT, activation=None
    )
    _as_keras_graph(ours)
    features, logits = _features_and_output(ours)(files.x)
    _assert_same(logits, files.logits)
    _assert_same(features, files.features)

    # The headless file, through the same road, into the base wiped to zeros (one build per
    # model keeps the slow set affordable; create_backbone and build_model take headless files
    # in the tests below): the base is the file's again and the head is left as it was.
    for layer in ours.layers:
        if layer.weights and not is_head_layer(layer):
            layer.set_weights([np.zeros(w.shape, w.dtype) for w in layer.weights])
    assert not np.allclose(ours(files.x), files.logits, atol=1e-2)
    load_into(ours, files.no_top)
    features, logits = _features_and_output(ours)(files.x)
    _assert_same(features, files.features)
    _assert_same(logits, files.logits)


# The families whose top starts after layers that could pass for a top: an unnamed pooling
# (MobileNet), a final BN and activation (ResNet V2, EfficientNet).
@pytest.mark.parametrize("name", ["mobilenet_v1_025", "resnet50v2", "efficientnet_b0"])
def test_headless_file_is_the_include_top_false_layout(name: str, published: Any, tmp_path: Path) -> None:
    """The no-top files of the other tests hold what keras.applications' no-top files hold."""
    keras_no_top = _write_h5(_reference(name, include_top=False), tmp_path / "no_top.h5")

    def layout(path: Path) -> list[list[tuple[int, ...]]]:
        """Weight shapes of each weighted layer in order (Keras numbers unnamed layers per build)."""
        with h5py.File(path, "r") as f:
            groups = [f[n.decode() if isinstance(n, bytes) else n] for n in f.attrs["layer_names"]]
            weighted = [g for g in groups if len(g.attrs["weight_names"])]
            return [[g[w].shape for w in g.attrs["weight_names"]] for g in weighted]

    assert layout(published(name).no_top) == layout(keras_no_top)


def test_mobilenet_top_file_gives_keras_classifier_at_224(tmp_path: Path) -> None:
    """create_model("mobilenet_v1_100", weights=<keras' file with its top>, num_classes=1000)."""
    keras.utils.set_random_seed(2)
    reference = keras.applications.MobileNet(alpha=1.0, weights=None, include_top=True)
    x = images((224, 224, 3), 2)
    ref_x = keras.applications.mobilenet.preprocess_input(x.copy())
    calibrate_batchnorm(reference, ref_x)
    path = _write_h5(reference, tmp_path / "mobilenet_1_0_224_tf.h5")

    ours = tk.create_model("mobilenet_v1_100", weights=str(path), num_classes=1000)
    expected = np.asarray(reference(ref_x))
    got = np.asarray(ours(x))
    assert got.shape == (2, 1000) and expected.std() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    kernel = ours.get_layer("predictions").get_weights()[0]
    conv_preds = reference.get_layer("conv_preds").get_weights()[0]
    np.testing.assert_array_equal(kernel, conv_preds.reshape(kernel.shape))


@pytest.mark.parametrize("name", ["mobilenet_v1_025", "vgg16"])
def test_top_file_with_other_classes_loads_all_but_predictions(name: str, published: Any) -> None:
    files = published(name)
    ours = tk.create_model(name, num_classes=7, weights=str(files.top), input_shape=COMPAT)
    # Base and hidden layers (VGG's fc1, fc2) are keras', up to the new 7-class predictions.
    got = np.asarray(_up_to_predictions(ours)(files.x)).reshape(4, -1)
    np.testing.assert_allclose(got, files.pre_logits, rtol=1e-4, atol=1e-5)
    assert files.pre_logits.std(axis=0).mean() > 1e-2 * np.abs(files.pre_logits).mean()
    assert ours.get_layer("predictions").get_weights()[0].shape == (files.pre_logits.shape[1], 7)
    assert ours(files.x).shape == (4, 7)


@pytest.mark.parametrize("which", ["top", "no_top"])
def test_training_road_and_backbone_take_either_file(which: str, published: Any) -> None:
    files = published("mobilenet_v1_025")
    path = str(getattr(files, which))
    model = tk.models.build_model("mobilenet_v1_025", 5, weights=path, image_size=COMPAT[0])
    features, output = _features_and_output(model)(files.x)
    assert_same(features, files.features)
    assert output.shape == (4, 5)
    backbone = tk.create_backbone("mobilenet_v1_025", weights=path, input_shape=COMPAT)
    assert_same(backbone(files.x), files.features)


@pytest.mark.slow
def test_vgg16_top_file_at_the_published_size(tmp_path: Path) -> None:
    """At 224x224 VGG's fc1 has the published (25088, 4096) kernel."""
    keras.utils.set_random_seed(3)
    reference = _reference("vgg16", include_top=True, shape=(224, 224, 3))
    path = _write_h5(reference, tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    x = images((224, 224, 3), 2)
    expected = np.asarray(reference(_preprocess("vgg16", x)))
    del reference
    ours = tk.create_model("vgg16", weights=str(path), activation=None)
    assert ours.get_layer("head_fc1").get_weights()[0].shape == (25088, 4096)
    assert_same(ours(x), expected)


# --- Keras 3 files and files that do not fit ---------------------------------------------------


def test_keras3_files_by_name_headless_or_with_other_classes(tmp_path: Path) -> None:
    x = images((32, 32, 3), 3)
    trained = tk.create_model("mobilenet_v1_025", num_classes=3, input_shape=(32, 32, 3))
    calibrate_batchnorm(trained, x)
    whole = tmp_path / "run.keras"
    trained.save(whole)
    headless = tmp_path / "base.weights.h5"
    keras.Model(trained.input, trained.get_layer("head_pool").input).save_weights(headless)
    expected = np.asarray(_up_to_predictions(trained)(x))

    for path in (whole, headless):
        again = tk.models.build_model("mobilenet_v1_025", 5, weights=str(path), image_size=32)
        assert_same(_up_to_predictions(again)(x), expected)
    base = tk.create_backbone("mobilenet_v1_025", weights=str(whole), input_shape=(32, 32, 3))
    assert_same(keras.layers.GlobalAveragePooling2D()(base(x)), expected)
    same = tk.create_model("mobilenet_v1_025", num_classes=3, weights=str(whole), input_shape=(32, 32, 3))
    np.testing.assert_allclose(same(x), trained(x), atol=1e-6)


def test_top_that_does_not_fit_the_head_changes_nothing(published: Any) -> None:
    files = published("mobilenet_v1_025")
    model = tk.create_model("mobilenet_v1_025", num_classes=1000, input_shape=COMPAT, hidden_units=(16,))
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(tk.WeightsError) as err:
        load_into(model, files.top)
    message = str(err.value)
    assert "\n" not in message and "conv_preds" in message and "head_fc1" in message
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_file_of_another_variant_names_the_first_layer_that_does_not_fit(published: Any) -> None:
    files = published("mobilenet_v1_050")
    with pytest.raises(tk.WeightsError) as err:
        tk.create_backbone("mobilenet_v1_025", weights=str(files.no_top), input_shape=COMPAT)
    message = str(err.value)
    assert "\n" not in message
    assert "layer 'conv1' (ours: 'stem_conv') has weights [(3, 3, 3, 16)] in the file" in message


def test_deeper_network_file_never_loads_in_part(tmp_path: Path) -> None:
    """resnet32's layers include every resnet20 name with the same shapes: by name alone it
    would load; the layers resnet20 does not have make it an error."""
    path = tmp_path / "resnet32.weights.h5"
    tk.create_model("resnet32").save_weights(path)
    stray = "it has a layer 'stage1_block4_conv1', which the model does not have"
    with pytest.raises(tk.WeightsError, match=stray):
        tk.create_model("resnet20", weights=str(path))


def test_unknown_format_and_other_hdf5(tmp_path: Path) -> None:
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    with pytest.raises(tk.WeightsError, match="unknown format; use .keras, .weights.h5 or legacy .h5"):
        tk.create_backbone("mobilenet_v1_025", weights=str(text), input_shape=(32, 32, 3))
    other = tmp_path / "data.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(tk.WeightsError, match="holds no Keras weights"):
        tk.create_backbone("mobilenet_v1_025", weights=str(other), input_shape=(32, 32, 3))
