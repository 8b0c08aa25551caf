"""Registry, MobileNet v1, pretrained weights, preprocessing, the shared head and freezing."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import keras
import numpy as np
import pytest

import transferkit as tk
from transferkit.data import SAMPLE_DIR
from transferkit.models import weights as weights_lib
from transferkit.models.layers import Preprocess
from transferkit.transfer import freeze, stage_names

ALPHAS = {"mobilenet_v1_025": 0.25, "mobilenet_v1_050": 0.5, "mobilenet_v1_075": 0.75, "mobilenet_v1_100": 1.0}


def _photos(folder: Path, n: int = 4, size: int = 224) -> np.ndarray:
    """Real photos, resized, as float32 0-255."""
    files = sorted(p for p in (folder / "ants").iterdir() if p.suffix == ".jpg")[:n]
    images = [keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size))) for p in files]
    return np.stack(images).astype("float32")


@pytest.mark.parametrize("name", sorted(ALPHAS))
def test_mobilenet_takes_keras_applications_weights(name: str) -> None:
    alpha = ALPHAS[name]
    ref = keras.applications.MobileNet(alpha=alpha, weights=None, include_top=False, input_shape=(64, 64, 3))
    ours = tk.create_backbone(name, input_shape=(64, 64, 3))
    weights_lib.copy_weights_by_order(ref, ours)
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = ref(keras.applications.mobilenet.preprocess_input(x.copy()), training=False)
    np.testing.assert_allclose(ours(x, training=False), expected, atol=1e-5)


def test_imagenet_features_equal_keras_applications_on_real_photos() -> None:
    x = _photos(SAMPLE_DIR)
    # The reference reads the same published file (bundled in the package) through keras.applications.
    published = weights_lib.resolve_file(weights_lib.get_record("mobilenet_v1_025", "imagenet"))
    ref = keras.applications.MobileNet(alpha=0.25, weights=str(published), include_top=False, input_shape=(224, 224, 3))
    ours = tk.create_backbone("mobilenet_v1_025", weights="imagenet")
    expected = ref.predict(keras.applications.mobilenet.preprocess_input(x.copy()), verbose=0)
    got = ours.predict(x, verbose=0)
    assert np.abs(expected).max() > 0.1  # real features, not an all-zero map
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_keras_cache_is_used_when_no_bundled_copy(keras_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(weights_lib, "ASSETS", tmp_path / "no_assets")
    record = weights_lib.get_record("mobilenet_v1_025", "imagenet")
    assert weights_lib.resolve_file(record) == keras_home / "models" / record.file_name


def test_bundled_copy_loads_offline_with_its_hash_checked(empty_keras_home: Path) -> None:
    record = weights_lib.get_record("mobilenet_v1_025", "imagenet")
    path = weights_lib.resolve_file(record)
    assert path.parent == weights_lib.ASSETS
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record.sha256


def test_tampered_bundled_copy_is_not_used(empty_keras_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    record = weights_lib.get_record("mobilenet_v1_025", "imagenet")
    fake = tmp_path / "assets"
    fake.mkdir()
    (fake / record.file_name).write_bytes(b"not the published weights")
    monkeypatch.setattr(weights_lib, "ASSETS", fake)
    record = dataclasses.replace(record, url="http://127.0.0.1:9/unreachable.h5")
    with pytest.raises(tk.WeightsError) as err:
        weights_lib.resolve_file(record)
    message = str(err.value)
    assert record.file_name in message and str(empty_keras_home / "models") in message
    assert "http://127.0.0.1:9/unreachable.h5" in message


def test_missing_weights_never_fall_back_to_random(empty_keras_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = weights_lib.get_record("mobilenet_v1_050", "imagenet")
    local = dataclasses.replace(record, url="http://127.0.0.1:9/" + record.file_name)
    monkeypatch.setitem(weights_lib._RECORDS, ("mobilenet_v1_050", "imagenet"), local)
    with pytest.raises(tk.WeightsError, match="mobilenet_5_0_224_tf_no_top.h5 is not in"):
        tk.create_model("mobilenet_v1_050", num_classes=2, weights="imagenet")


def test_unpublished_tag_lists_models_that_have_it() -> None:
    with pytest.raises(tk.WeightsError, match="models with published weights: .*mobilenet_v1_025 \\(imagenet\\)"):
        weights_lib.get_record("mobilenet_v1_025", "instagram")


def test_user_weights_file_round_trip(tmp_path: Path) -> None:
    model = tk.create_model("mobilenet_v1_025", num_classes=3, input_shape=(64, 64, 3))
    path = tmp_path / "mine.weights.h5"
    model.save_weights(path)
    again = tk.create_model("mobilenet_v1_025", num_classes=3, input_shape=(64, 64, 3), weights=str(path))
    x = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(model(x), again(x))
    with pytest.raises(tk.WeightsError, match="does not exist"):
        tk.create_model("mobilenet_v1_025", weights=str(tmp_path / "absent.weights.h5"))


def test_preprocessing_is_a_layer_chosen_by_the_weights_config() -> None:
    model = tk.create_model("mobilenet_v1_025", num_classes=2, weights="imagenet")
    layer = model.get_layer("preprocess")
    assert isinstance(layer, Preprocess) and layer.mode == "tf"
    x = np.array([[[[0.0, 127.5, 255.0]]]], dtype="float32")
    np.testing.assert_allclose(layer(x), [[[[-1.0, 0.0, 1.0]]]])


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe", "unit", "none"])
def test_preprocess_modes_match_keras(mode: str) -> None:
    from keras.src.applications.imagenet_utils import preprocess_input

    x = np.random.default_rng(3).uniform(0, 255, (1, 4, 4, 3)).astype("float32")
    expected = {"none": x, "unit": x / 255.0}.get(mode)
    if expected is None:
        expected = preprocess_input(x.copy(), mode=mode)
    np.testing.assert_allclose(Preprocess(mode)(x), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("pooling,layer", [("avg", "head_pool"), ("max", "head_pool"), ("flatten", "head_flatten")])
def test_shared_head_pooling(pooling: str, layer: str) -> None:
    model = tk.create_model("mobilenet_v1_025", num_classes=4, input_shape=(64, 64, 3), pooling=pooling, hidden_units=(8,), dropout=0.5)
    kind = {"avg": "GlobalAveragePooling2D", "max": "GlobalMaxPooling2D", "flatten": "Flatten"}[pooling]
    assert type(model.get_layer(layer)).__name__ == kind
    assert model.get_layer("head_fc1").units == 8
    assert model.get_layer("predictions").units == 4
    assert model.layers[-1].name == "predictions"
    with pytest.raises(tk.ConfigError, match="pooling must be one of"):
        tk.create_model("mobilenet_v1_025", input_shape=(64, 64, 3), pooling="mean")


def test_registry_names_and_aliases() -> None:
    assert "mobilenet_v1_025" in tk.list_models("mobilenet*")
    assert tk.get_model_info("mobilenet").name == "mobilenet_v1_100"
    assert tk.get_model_info("MobileNet_V1_050").name == "mobilenet_v1_050"
    with pytest.raises(tk.ConfigError, match="needs images of at least 32x32"):
        tk.create_model("mobilenet_v1_025", input_shape=(16, 16, 3))


def test_paper_parameter_counts() -> None:
    """Table 6/7 of the paper give millions to one decimal: within 2% or that rounding."""
    for name in ALPHAS:
        info = tk.get_model_info(name)
        ours = tk.create_model(name).count_params()
        assert abs(ours - info.paper_params) <= max(0.02 * info.paper_params, 0.05e6), name


def test_freeze_whole_base_then_from_a_stage() -> None:
    model = tk.create_model("mobilenet_v1_025", num_classes=2, input_shape=(64, 64, 3))
    assert stage_names(model) == ["stem", "stage1", "stage2", "stage3", "stage4", "stage5"]
    freeze(model)
    trainable = {w.path.split("/")[0] for w in model.trainable_weights}
    assert trainable == {"predictions"}
    freeze(model, trainable_from="stage4")
    trainable_layers = {l.name.split("_")[0] for l in model.layers if l.trainable and l.weights and not isinstance(l, keras.layers.BatchNormalization)}
    assert trainable_layers == {"stage4", "stage5", "predictions"}
    assert not any(l.trainable for l in model.layers if isinstance(l, keras.layers.BatchNormalization))
    freeze(model, trainable_from="stage4", train_bn=True)
    assert model.get_layer("stage4_block1_dw_bn").trainable and not model.get_layer("stage3_block1_dw_bn").trainable
    with pytest.raises(tk.ConfigError, match="no stage or layer named 'stage9'"):
        freeze(model, trainable_from="stage9")


def test_frozen_base_and_its_bn_statistics_do_not_change_in_training() -> None:
    model = tk.create_model("mobilenet_v1_025", num_classes=2, weights="imagenet", input_shape=(64, 64, 3))
    freeze(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    before = {w.path: np.array(w.numpy(), copy=True) for w in model.weights if not w.path.startswith("predictions")}
    x = np.random.default_rng(4).uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    head = model.get_layer("predictions")
    head_before = [np.array(w.numpy(), copy=True) for w in head.weights]
    model.fit(x, np.array([0, 1] * 4), epochs=2, verbose=0)
    for w in model.weights:
        if w.path in before:
            assert np.array_equal(before[w.path], w.numpy()), w.path
    for old, w in zip(head_before, head.weights):
        assert not np.array_equal(old, w.numpy()), w.path


def test_keras_file_round_trip(tmp_path: Path) -> None:
    model = tk.create_model("mobilenet_v1_025", num_classes=3, input_shape=(32, 32, 3))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model(x), loaded(x), atol=1e-6)
    clone = keras.Model.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
