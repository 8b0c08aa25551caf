"""Evaluation reports: metrics against hand-computed values, the plots, and `evaluate`'s report."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.cli import main
from transferkit.inference.report import classification_metrics, write_report

CLASSES = ["ant", "bee", "wasp"]
# Wasp is never predicted. Rows true, columns predicted: ant [2 1 0], bee [1 1 0], wasp [1 1 0].
Y_TRUE = [0, 0, 0, 1, 1, 2, 2]
Y_PRED = [0, 0, 1, 1, 0, 0, 1]
CONFIDENCE = [0.9, 0.8, 0.6, 0.7, 0.9, 0.7, 0.8]


def _probs(y_pred: list[int], confidence: list[float], num_classes: int) -> np.ndarray:
    """Rows whose argmax is y_pred with that probability, the rest spread evenly."""
    probs = np.zeros((len(y_pred), num_classes))
    for i, (k, c) in enumerate(zip(y_pred, confidence)):
        probs[i] = (1 - c) / (num_classes - 1)
        probs[i, k] = c
    return probs


PROBS = _probs(Y_PRED, CONFIDENCE, len(CLASSES))


def test_metrics_equal_hand_computed_values() -> None:
    m = classification_metrics(Y_TRUE, PROBS, CLASSES)
    assert m["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [1, 1, 0]]
    assert m["accuracy"] == pytest.approx(3 / 7)
    assert m["num_images"] == 7
    expected = {
        "ant": (2 / 4, 2 / 3, 4 / 7, 3),
        "bee": (1 / 3, 1 / 2, 2 / 5, 2),
        "wasp": (0.0, 0.0, 0.0, 2),
    }
    for name, (p, r, f1, support) in expected.items():
        got = m["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f1)), name
        assert got["support"] == support
    assert m["macro"] == pytest.approx({"precision": 5 / 18, "recall": 7 / 18, "f1": 34 / 105})
    assert m["weighted"] == pytest.approx({"precision": 13 / 42, "recall": 3 / 7, "f1": 88 / 245})
    assert "top_5_accuracy" not in m  # only 3 classes


def test_class_never_predicted_has_precision_zero_without_warning_or_nan() -> None:
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        m = classification_metrics(Y_TRUE, PROBS, CLASSES)
    assert m["per_class"]["wasp"]["precision"] == 0.0
    text = json.dumps(m)
    assert "NaN" not in text and "Infinity" not in text


# Two classes, confidences inside bins (not on their edges): bin (0.9, 1] holds two images, one
# right; (0.7, 0.8] two, both right; (0.5, 0.6] one, wrong.
CALIBRATION_TRUE = [0, 1, 1, 0, 0]
CALIBRATION_PROBS = np.array([[0.95, 0.05], [0.95, 0.05], [0.25, 0.75], [0.75, 0.25], [0.45, 0.55]])


def test_calibration_equals_hand_computed_values() -> None:
    c = classification_metrics(CALIBRATION_TRUE, CALIBRATION_PROBS, ["a", "b"])["calibration"]
    assert c["bins"] == 10
    reliability = c["reliability"]
    assert reliability["count"] == [1, 2, 2]
    assert reliability["bin"] == [5, 7, 9]
    assert reliability["confidence"] == pytest.approx([0.55, 0.75, 0.95])
    assert reliability["accuracy"] == pytest.approx([0.0, 1.0, 0.5])
    # (1 * |0 - 0.55| + 2 * |1 - 0.75| + 2 * |0.5 - 0.95|) / 5
    assert c["expected_calibration_error"] == pytest.approx(1.95 / 5)


def test_calibrated_confidence_has_no_calibration_error() -> None:
    # Four predictions at confidence 0.75, three of them right.
    probs = np.array([[0.75, 0.25], [0.75, 0.25], [0.25, 0.75], [0.25, 0.75]])
    c = classification_metrics([0, 0, 1, 0], probs, ["a", "b"])["calibration"]
    assert c["expected_calibration_error"] == pytest.approx(0.0, abs=1e-12)
    assert c["reliability"] == {"bin": [7], "confidence": pytest.approx([0.75]), "accuracy": pytest.approx([0.75]), "count": [4]}


def test_calibration_bins_hold_every_image_once() -> None:
    # Confidences on bin edges (0.6, 0.7, 0.8, 0.9): each bin's count must match its mean, so the
    # counts times the means add up to the confidences and the right predictions.
    c = classification_metrics(Y_TRUE, PROBS, CLASSES)["calibration"]["reliability"]
    count = np.array(c["count"])
    assert count.sum() == len(Y_TRUE)
    assert (count * np.array(c["confidence"])).sum() == pytest.approx(sum(CONFIDENCE))
    assert (count * np.array(c["accuracy"])).sum() == pytest.approx(sum(t == p for t, p in zip(Y_TRUE, Y_PRED)))


def test_top_5_accuracy_with_more_than_5_classes() -> None:
    # Image 0: its class ranks 2nd (in the top 5); image 1: its class ranks last (not).
    probs = np.array([[0.30, 0.25, 0.20, 0.15, 0.06, 0.04], [0.30, 0.25, 0.20, 0.15, 0.06, 0.04]])
    m = classification_metrics([1, 5], probs, list("abcdef"))
    assert m["accuracy"] == 0.0
    assert m["top_5_accuracy"] == 0.5


@pytest.fixture(scope="module")
def photos() -> list[str]:
    sample = Path(__file__).resolve().parents[1] / "transferkit" / "assets" / "sample"
    return sorted(str(p) for p in (sample / "ants").glob("*.jpg"))[: len(Y_TRUE)]


HISTORY = [
    {"epoch": "1", "phase": "head", "loss": "1.2", "accuracy": "0.5", "val_loss": "1.1", "val_accuracy": "0.55"},
    {"epoch": "2", "phase": "head", "loss": "0.9", "accuracy": "0.6", "val_loss": "1.0", "val_accuracy": "0.6"},
    {"epoch": "3", "phase": "fine_tune", "loss": "0.7", "accuracy": "0.7", "val_loss": "0.9", "val_accuracy": "0.65"},
]


def test_report_files_plots_and_markdown(tmp_path: Path, photos: list[str]) -> None:
    out = tmp_path / "report"
    report = write_report(out, Y_TRUE, PROBS, CLASSES, files=photos, history=HISTORY)
    assert json.loads((out / "report.json").read_text()) == report
    pngs = ["confusion_matrix.png", "per_class.png", "reliability.png", "training_curves.png", "mistakes.png"]
    assert report["plots"] == pngs
    markdown = (out / "report.md").read_text()
    for name in pngs:
        with Image.open(out / name) as image:
            image.load()
            assert image.width >= 300 and image.height >= 200, name
            low, high = image.convert("L").getextrema()
            assert high - low > 100, f"{name} is nearly blank"
        assert f"]({name})" in markdown
    assert "| wasp | 0.0000 | 0.0000 | 0.0000 | 2 |" in markdown
    assert f"| expected calibration error | {report['calibration']['expected_calibration_error']:.4f} |" in markdown


def test_mistakes_sorted_by_confidence(tmp_path: Path, photos: list[str]) -> None:
    report = write_report(tmp_path / "r", Y_TRUE, PROBS, CLASSES, files=photos)
    mistakes = report["mistakes"]
    assert [m["path"] for m in mistakes] == [photos[i] for i in (4, 6, 5, 2)]
    assert [m["confidence"] for m in mistakes] == pytest.approx([0.9, 0.8, 0.7, 0.6])
    assert (mistakes[0]["true"], mistakes[0]["predicted"]) == ("bee", "ant")
    assert not (tmp_path / "r" / "training_curves.png").exists()


def test_without_files_there_are_no_mistakes(tmp_path: Path) -> None:
    report = write_report(tmp_path / "r", Y_TRUE, PROBS, CLASSES)
    assert "mistakes" not in report and not (tmp_path / "r" / "mistakes.png").exists()


# --- `evaluate` writes the report -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample at 64 px, one head epoch and one fine-tune epoch (so both phases show)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    args = ["--epochs", "1", "--fine-tune-epochs", "1", "--image-size", "64", "--quiet"]
    assert main(["finetune", "--data", "sample", "--out", str(out), *args]) == 0
    return out


def test_finetune_writes_its_report_without_evaluate(tiny_run: Path) -> None:
    # Written by finetune itself (the fixture runs no evaluate before this test).
    folder = tiny_run / "report"
    report = json.loads((folder / "report.json").read_text())
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    # The same validation images as Keras' model.evaluate in the run, scored through predict's road.
    assert report["num_images"] == metrics["num_val"]
    assert abs(report["accuracy"] - metrics["val_accuracy"]) < 1e-6
    assert np.asarray(report["confusion_matrix"]).sum() == metrics["num_val"]
    phases = [row["phase"] for row in metrics["epochs"]]
    assert phases == ["head", "fine_tune"] and "training_curves.png" in report["plots"]
    for name in report["plots"]:
        assert (folder / name).is_file()
    assert (folder / "report.md").read_text().startswith("#")


def test_evaluate_run_writes_report_into_run_folder(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics_file = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(tiny_run), "--output", str(metrics_file)]) == 0
    printed = capsys.readouterr().out
    folder = tiny_run / "report"
    assert f"report: {folder}" in printed
    report = json.loads((folder / "report.json").read_text())
    metrics = json.loads(metrics_file.read_text())
    assert report["accuracy"] == metrics["accuracy"]
    assert re.search(r"accuracy: ([\d.]+) on", printed).group(1) == f"{report['accuracy']:.4f}"
    assert report["num_images"] == metrics["num_images"]
    assert sum(report["per_class"][c]["support"] for c in ("ants", "bees")) == metrics["num_images"]
    for name in report["plots"]:
        assert (folder / name).is_file()
    assert "training_curves.png" in report["plots"]
    assert len(report["mistakes"]) == round((1 - report["accuracy"]) * report["num_images"])
    assert sum(report["calibration"]["reliability"]["count"]) == metrics["num_images"]


def test_evaluate_report_option(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "report"
    assert main(["evaluate", "--model", str(tiny_run), "--data", "sample", "--report", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.md").is_file() and report["plots"][:2] == ["confusion_matrix.png", "per_class.png"]


@pytest.mark.parametrize("inside", [False, True], ids=["is-a-file", "inside-a-file"])
def test_report_path_that_is_a_file_is_a_one_line_error(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], inside: bool
) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("precious")
    metrics_file = tmp_path / "metrics.json"
    report = existing / "report" if inside else existing
    code = main(["evaluate", "--model", str(tiny_run), "--report", str(report), "--output", str(metrics_file)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("transferkit evaluate: error:") and "is a file" in err[0], err
    assert existing.read_text() == "precious"
    assert not metrics_file.exists()


def test_rewriting_a_report_removes_plots_it_no_longer_has(tmp_path: Path, photos: list[str]) -> None:
    write_report(tmp_path, Y_TRUE, PROBS, CLASSES, files=photos, history=HISTORY)
    report = write_report(tmp_path, Y_TRUE, PROBS, CLASSES)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(report["plots"])


def test_run_report_of_data_without_files_scores_the_validation_batches(tmp_path: Path) -> None:
    # tensorflow-datasets sources have no files: the report scores the validation batches.
    import types

    import keras
    import tensorflow as tf

    from transferkit.runs.folder import write_val_report

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (10, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 10).astype("int32")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    data = types.SimpleNamespace(
        class_names=("a", "b", "c"), files=(), labels=(), splits=(),
        val=tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
    )
    report = write_val_report(tmp_path / "report", model, data, [])
    expected = float((np.argmax(model.predict(x, verbose=0), axis=1) == y).mean())
    assert report["num_images"] == 10 and abs(report["accuracy"] - expected) < 1e-9
    assert "mistakes" not in report and (tmp_path / "report" / "confusion_matrix.png").is_file()
