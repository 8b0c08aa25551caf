"""Test-time augmentation in `predict` and `evaluate`: the probabilities are the mean of the
model's on the views (mirror; corner and centre crops), recomputed here from the decoded pixels."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import transferkit as tk
from transferkit.cli import main
from transferkit.data import SAMPLE_DIR, pipeline
from transferkit.inference import predict_files

SIZE = 64


@pytest.fixture(scope="module")
def files() -> list[str]:
    return sorted(str(p) for p in SAMPLE_DIR.rglob("*.jpg"))[::5]


@pytest.fixture
def model(keras_home: Path) -> keras.Model:
    keras.utils.set_random_seed(0)
    return tk.create_model("mobilenet_v1_025", num_classes=2, weights="imagenet", input_shape=(SIZE, SIZE, 3))


def _decoded(files: list[str], size: int) -> np.ndarray:
    pairs = sorted((int(i), x.numpy()) for i, x in pipeline.decode_files(files, size))
    return np.stack([x for _, x in pairs]).astype(np.float32)


def test_flip_is_the_mean_of_the_image_and_its_mirror(model: keras.Model, files: list[str]) -> None:
    x = _decoded(files, SIZE)
    expected = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    plain, _ = predict_files(model, files)
    probs, done = predict_files(model, files, tta="flip")
    assert done == list(range(len(files)))
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert np.abs(probs - plain).max() > 1e-3  # the mirror changed something


def test_crops_are_the_ten_crops_of_a_larger_decode(model: keras.Model, files: list[str]) -> None:
    big = _decoded(files, round(SIZE * 8 / 7))
    side, m = big.shape[1], big.shape[1] - SIZE
    crops = [big[:, y : y + SIZE, x : x + SIZE] for y, x in ((0, 0), (0, m), (m, 0), (m, m), (m // 2, m // 2))]
    views = crops + [c[:, :, ::-1] for c in crops]
    assert side == 73 and len(views) == 10
    expected = np.mean([model.predict(v, verbose=0) for v in views], axis=0)
    probs, _ = predict_files(model, files, tta="crops")
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def _run(folder: Path, channels: int) -> Path:
    """A run folder with an untrained (seeded) model that is not mirror-symmetric."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, channels))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 5, strides=4, activation="relu")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(keras.layers.Flatten()(x))
    folder.mkdir(parents=True)
    keras.Model(inputs, outputs).save(folder / "model.keras")
    (folder / "labels.txt").write_text("ants\nbees\n")
    (folder / "config.json").write_text("{}")
    return folder


def test_evaluate_prints_the_plain_and_the_tta_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path / "run", 3)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(run), "--data", "sample", "--tta", "--output", str(out)]) == 0
    stdout = capsys.readouterr().out
    metrics = json.loads(out.read_text())
    files = sorted(str(p) for p in SAMPLE_DIR.rglob("*") if p.suffix in (".jpg", ".jpeg"))
    truth = np.array([0 if "/ants/" in f else 1 for f in files])
    x = _decoded(files, 32)
    model = keras.saving.load_model(run / "model.keras")
    plain = model.predict(x, verbose=0)
    flipped = (plain + model.predict(x[:, :, ::-1], verbose=0)) / 2
    assert metrics["accuracy"] == pytest.approx(float((plain.argmax(1) == truth).mean()))
    assert metrics["tta"] == "flip"
    assert metrics["tta_accuracy"] == pytest.approx(float((flipped.argmax(1) == truth).mean()))
    assert f"accuracy: {metrics['accuracy']:.4f} on {len(files)} images" in stdout
    assert f"accuracy with test-time augmentation (flip): {metrics['tta_accuracy']:.4f}" in stdout
    assert tk.load(run).evaluate("sample", tta="flip")["tta_accuracy"] == metrics["tta_accuracy"]  # the notebook's road


def test_a_grey_model_is_warned_not_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path / "grey", 1)
    image = sorted(SAMPLE_DIR.rglob("*.jpg"))[0]
    assert main(["predict", str(image), "--model", str(run), "--tta"]) == 0
    captured = capsys.readouterr()
    assert "transferkit: warning: flip test-time augmentation mirrors the images" in captured.err
    assert str(image) in captured.out
