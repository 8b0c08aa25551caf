"""`evaluate` reuses a run's split.csv, so a model is never scored on its own training files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from transferkit.cli import main


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "sample"
    assert main(["finetune", "--data", "sample", "--out", str(out), "--epochs", "1", "--fine-tune-epochs", "0", "--quiet"]) == 0
    return out


def _splits(run: Path) -> dict[str, int]:
    with open(run / "split.csv") as f:
        rows = list(csv.DictReader(f))
    return {s: sum(r["split"] == s for r in rows) for s in {r["split"] for r in rows}}


def test_run_folder_alone_scores_its_held_out_split(sample_run: Path, tmp_path: Path) -> None:
    """On its held-out split, evaluate gives the accuracy training reported for it: the same
    files, decoded the same way, through the same model."""
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(sample_run), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    trained = json.loads((sample_run / "metrics.json").read_text())
    assert metrics["num_images"] == _splits(sample_run)["val"] == trained["num_val"]
    assert metrics["accuracy"] == pytest.approx(trained["val_accuracy"], abs=1e-6)


def test_held_out_probabilities_give_the_runs_validation_loss(sample_run: Path) -> None:
    """A sharper form of the above: accuracy moves only when a prediction flips, the loss moves
    with any change of pixels or weights."""
    from transferkit.inference import score, select_images
    from transferkit.runs.folder import open_run

    run = open_run(sample_run)
    scores = score(run.model, run.class_names, select_images(None, run.manifest))
    p_true = np.clip(scores.scores[np.arange(len(scores.truth)), scores.truth], 1e-7, 1.0)
    trained = json.loads((sample_run / "metrics.json").read_text())
    assert float(-np.log(p_true).mean()) == pytest.approx(trained["val_loss"], rel=1e-4)


def test_training_files_are_left_out_of_data(sample_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(sample_run), "--data", "sample", "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    counts = _splits(sample_run)
    assert metrics["excluded_training_images"] == counts["train"]
    assert metrics["num_images"] == counts["val"]
    assert f"left out {counts['train']} images the model trained on" in capsys.readouterr().out


def test_no_data_and_no_run_folder_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --data" in err[0]
