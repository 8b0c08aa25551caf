"""Use as-is, mode 1: the unchanged published classifier, its class names, class maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.models import pretrained_classifier
from transferkit.models import weights as weights_lib
from transferkit.inference import imagenet
from transferkit.errors import ConfigError, WeightsError

TOP_FILE = "mobilenet_2_5_224_tf.h5"


@pytest.fixture
def top_home(keras_home: Path) -> Path:
    """KERAS_HOME holding a real keras.applications include_top file (randomly initialised:
    the published one needs a download) under the name keras.applications caches it as."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(1)
    reference = keras.applications.MobileNet(alpha=0.25, weights=None, include_top=True)
    with h5py.File(keras_home / "models" / TOP_FILE, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    return keras_home


def test_class_names_ship_with_the_package() -> None:
    names = imagenet.class_names()
    assert len(names) == 1000 and len(set(imagenet.wnids())) == 1000
    assert names[0] == "tench" and imagenet.wnids()[0] == "n01440764"
    assert names[309] == "bee" and names[310] == "ant"
    assert imagenet.find_class("pismire") == 310 and imagenet.find_class("n02206856") == 309


def test_class_map_parsing(tmp_path: Path) -> None:
    assert imagenet.parse_class_map("ant=ant,bee=bee") == {"ant": [310], "bee": [309]}
    assert imagenet.parse_class_map("fish=tench+goldfish") == {"fish": [0, 1]}
    mapping = tmp_path / "map.tsv"
    mapping.write_text("# user\timagenet\nant\tant\nbee\tbee\n")
    assert imagenet.parse_class_map(str(mapping)) == {"ant": [310], "bee": [309]}
    with pytest.raises(ConfigError, match="closest: bee"):
        imagenet.parse_class_map("bee=beee")
    probs = np.zeros((2, 1000))
    probs[0, 310], probs[1, 309], probs[1, 0] = 0.9, 0.6, 0.4
    scores = imagenet.mapped_predictions(probs, {"ant": [310], "bee": [309, 0]}, ("ant", "bee"))
    np.testing.assert_allclose(scores, [[0.9, 0.0], [0.0, 1.0]])


def test_top_record_follows_keras_applications() -> None:
    record = weights_lib.top_record("mobilenet_v1_025")
    assert record.file_name == TOP_FILE and record.num_classes == 1000
    assert record.url.endswith("/mobilenet/" + TOP_FILE)


def test_unchanged_classifier_matches_keras_applications(top_home: Path) -> None:
    import keras

    ours = pretrained_classifier("mobilenet_v1_025")
    reference = keras.applications.MobileNet(alpha=0.25, weights=None, include_top=True)
    reference.load_weights(str(top_home / "models" / TOP_FILE))
    x = np.random.default_rng(0).uniform(0, 255, (3, 224, 224, 3)).astype("float32")
    expected = reference.predict(keras.applications.mobilenet.preprocess_input(x.copy()), verbose=0)
    got = ours.predict(x, verbose=0)
    assert got.shape == (3, 1000) and expected.std() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    kernel = ours.get_layer("predictions").get_weights()[0]
    np.testing.assert_array_equal(kernel, reference.get_layer("conv_preds").get_weights()[0].reshape(kernel.shape))


def test_missing_top_file_says_how_to_get_it(keras_home: Path) -> None:
    with pytest.raises(WeightsError, match=TOP_FILE):
        pretrained_classifier("mobilenet_v1_025")


def test_predict_and_evaluate_the_unchanged_model(
    top_home: Path, hymenoptera: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from transferkit.cli import main

    data = tmp_path / "few"
    for cls in ("ants", "bees"):
        (data / cls).mkdir(parents=True)
        for f in sorted((hymenoptera / cls).iterdir())[:4]:
            shutil.copy(f, data / cls / f.name)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(data), "--top-k", "3", "--output", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 8 and lines[0].count("(") == 3
    assert out.read_text().splitlines()[0].startswith("path,label_1,probability_1")

    metrics = tmp_path / "metrics.json"
    code = main(["evaluate", "--data", str(data), "--map", "ants=ant,bees=bee", "--output", str(metrics)])
    assert code == 0
    import json

    result = json.loads(metrics.read_text())
    assert result["num_images"] == 8 and 0.0 <= result["accuracy"] <= 1.0
    assert set(result["per_class_accuracy"]) == {"ants", "bees"}

    assert main(["evaluate", "--data", str(data)]) == 2
    assert "pass --map" in capsys.readouterr().err
