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


ANT_LOGIT = 10.0


def _write_top(keras_home: Path, ant_wins: bool = False) -> Path:
    """Writes a real keras.applications include_top file (the published one needs a download)
    under the name keras.applications caches it as: randomly initialised, or, with ``ant_wins``,
    with a classifier that ignores the image and scores ImageNet's 'ant' ANT_LOGIT, every other
    class 0."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(1)
    reference = keras.applications.MobileNet(alpha=0.25, weights=None, include_top=True)
    if ant_wins:
        top = reference.get_layer("conv_preds")
        kernel, bias = top.get_weights()
        bias = np.zeros_like(bias)
        bias[imagenet.find_class("ant")] = ANT_LOGIT
        top.set_weights([np.zeros_like(kernel), bias])
    with h5py.File(keras_home / "models" / TOP_FILE, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    return keras_home


@pytest.fixture
def top_home(keras_home: Path) -> Path:
    """KERAS_HOME with a randomly initialised include_top file."""
    return _write_top(keras_home)


@pytest.fixture
def ant_home(keras_home: Path) -> Path:
    """KERAS_HOME with an include_top file whose classifier says 'ant' for every image."""
    return _write_top(keras_home, ant_wins=True)


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
    ant_home: Path, hymenoptera: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    from transferkit.cli import main

    counts = {"ants": 5, "bees": 3}
    data = tmp_path / "few"
    for cls, n in counts.items():
        (data / cls).mkdir(parents=True)
        for f in sorted((hymenoptera / cls).iterdir())[:n]:
            shutil.copy(f, data / cls / f.name)
    # softmax of the crafted logits: ANT_LOGIT for ant, 0 for the 999 others.
    p_ant = np.exp(ANT_LOGIT) / (np.exp(ANT_LOGIT) + 999)
    p_other = 1 / (np.exp(ANT_LOGIT) + 999)

    out = tmp_path / "pred.csv"
    assert main(["predict", str(data), "--top-k", "3", "--output", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == sum(counts.values())
    for line in lines:
        assert line.split("\t")[1].startswith(f"ant ({p_ant:.3f}), "), line
    rows = out.read_text().splitlines()
    assert rows[0].startswith("path,label_1,probability_1")
    assert all(r.split(",")[1] == "ant" and float(r.split(",")[2]) == pytest.approx(p_ant, abs=1e-5) for r in rows[1:])

    # Every image is called an ant, so the accuracy is the share of ants.
    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "--data", str(data), "--map", "ants=ant,bees=bee", "--output", str(metrics)]) == 0
    result = json.loads(metrics.read_text())
    assert result["num_images"] == 8
    assert result["accuracy"] == pytest.approx(counts["ants"] / 8, abs=1e-9)
    assert result["per_class_accuracy"] == {"ants": 1.0, "bees": 0.0}

    # A class scores the sum of its ImageNet classes: bees=bee+ant outscores ants=ant everywhere.
    report = tmp_path / "report"
    assert main(["evaluate", "--data", str(data), "--map", "ants=ant,bees=bee+ant", "--output", str(metrics), "--report", str(report)]) == 0
    result = json.loads(metrics.read_text())
    assert result["accuracy"] == pytest.approx(counts["bees"] / 8, abs=1e-9)
    calibration = json.loads((report / "report.json").read_text())["calibration"]
    assert calibration["reliability"]["confidence"] == pytest.approx([p_ant + p_other], abs=1e-5)
    assert calibration["expected_calibration_error"] == pytest.approx(p_ant + p_other - counts["bees"] / 8, abs=1e-5)

    assert main(["evaluate", "--data", str(data)]) == 2
    assert "pass --map" in capsys.readouterr().err
