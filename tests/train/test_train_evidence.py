"""``train`` trains the whole network: LeNet-5 from random init on scikit-learn's handwritten
digits reaches what an RBF-kernel SVM reaches on the same pixels and the same split; and
``finetune --weights none`` is refused, pointing to ``train``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest


def test_lenet5_from_scratch_on_digits_reaches_an_rbf_svm(tmp_path: Path) -> None:
    from PIL import Image
    from sklearn.svm import SVC

    from transferkit.cli import main

    out = tmp_path / "run"
    code = main([
        "train", "--base", "lenet5", "--data", "digits", "--image-size", "32", "--schedule", "cosine",
        "--lr", "0.02", "--batch-size", "32", "--epochs", "15", "--out", str(out), "--quiet",
    ])
    assert code == 0
    net = json.loads((out / "metrics.json").read_text())["val_accuracy"]

    # The baseline: scikit-learn's default RBF SVM on the raw 8x8 pixels of the run's own split.
    pixels: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    labels: dict[str, list[str]] = {"train": [], "val": []}
    with open(out / "split.csv", newline="") as f:
        for row in csv.DictReader(f):
            image = np.asarray(Image.open(row["path"]), dtype=np.float64)
            assert image.shape == (8, 8)
            pixels[row["split"]].append(image.ravel() / 255.0)
            labels[row["split"]].append(row["label"])
    assert len(labels["train"]) + len(labels["val"]) == 1797 and len(set(labels["val"])) == 10
    svm = SVC().fit(pixels["train"], labels["train"]).score(pixels["val"], labels["val"])
    # Measured here: SVM 0.981, LeNet-5 0.986 (15 epochs); a frozen random LeNet with a trained
    # head (the old finetune --weights none) ended at 0.91.
    # Training on several threads is not bit-reproducible: LeNet-5 was measured at 0.967 to 0.986
    # across runs (the SVM at 0.981), so "reaches" allows 2 points (7 of the 360 images).
    assert svm > 0.97
    assert net >= svm - 0.02, (net, svm)

    # Every layer trained: no weight of the saved model is still at its initial value.
    import keras

    from transferkit.models import build_model

    trained = keras.saving.load_model(out / "model.keras", compile=False)
    keras.utils.set_random_seed(0)
    initial = build_model("lenet5", 10, None, 32, 1)
    for w0, w1 in zip(initial.weights, trained.weights):
        if w0.trainable:
            assert not np.allclose(np.asarray(w0), np.asarray(w1)), w0.path


def test_finetune_with_random_init_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transferkit.cli import main

    out = tmp_path / "run"
    capsys.readouterr()
    code = main(["finetune", "--base", "lenet5", "--weights", "none", "--data", "sample", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "transferkit train" in err and not out.exists()
