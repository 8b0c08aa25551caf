"""Every recipe runs, on tiny settings, and produces what it promises."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _accuracy(model: Any, batches: Any) -> float:
    """Accuracy of ``model`` over ``(images, labels)`` batches, counted here."""
    right = total = 0
    for images, labels in batches:
        predicted = np.argmax(model.predict(images, verbose=0), axis=1)
        right += int((predicted == labels.numpy()).sum())
        total += len(predicted)
    return right / total


def test_notebook_quickstart_runs_on_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    monkeypatch.chdir(tmp_path)
    source = (RECIPES / "notebook_quickstart.py").read_text()
    source = source.replace("epochs=5, fine_tune_epochs=2", "epochs=1, fine_tune_epochs=1")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "notebook_quickstart.py", "exec"), namespace)
    result, bundle = namespace["result"], namespace["bundle"]
    run = tmp_path / "runs" / "quickstart"
    assert (run / "saved_model").is_dir()
    assert result.class_names == ("ants", "bees")
    # The run folder holds the model the notebook predicted with.
    saved = keras.saving.load_model(run / "model.keras")
    np.testing.assert_allclose(saved.predict(namespace["images"], verbose=0), namespace["probabilities"], atol=1e-5)
    # The notebook's validation batches are the run's held-out split, and the accuracy it
    # printed is the model's accuracy on them.
    with open(run / "split.csv") as f:
        held_out = sorted(r["path"] for r in csv.DictReader(f) if r["split"] == "val")
    assert sorted(f for f, s in zip(bundle.files, bundle.splits) if s == "val") == held_out
    assert result.val_accuracy == pytest.approx(_accuracy(result.model, bundle.val), abs=1e-6)
