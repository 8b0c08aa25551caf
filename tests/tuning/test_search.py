"""Real keras-tuner searches on tiny data: the best trial is the one picked, its model follows
its hyperparameters, and an interrupted search resumes without redoing finished trials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import pytest

import transferkit  # noqa: F401  (registers the custom layers for load_model)
from transferkit import tuning
from transferkit.errors import ConfigError

SPACE = {"width": [1, 2], "block_dropout": [0.0, 0.3], "lr": {"min": 1e-3, "max": 3e-2, "sampling": "log"}}
OPTIONS: dict[str, Any] = dict(epochs=1, batch_size=8, val_split=0.25, augment=False, verbose=0, seed=1)


@pytest.fixture(scope="module")
def searched(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuning.TuneResult:
    out = tmp_path_factory.mktemp("search") / "run"
    return tuning.tune("wrn_10_1", tiny_data, SPACE, max_trials=2, out=out, objective="val_loss", **OPTIONS)


def test_search_runs_every_trial_and_picks_the_best(searched: tuning.TuneResult) -> None:
    out = searched.out
    trials = json.loads((out / "trials.json").read_text())
    best = json.loads((out / "best_hyperparameters.json").read_text())
    assert len(trials) == 2 and all(t["status"] == "COMPLETED" for t in trials)
    assert trials[0]["hyperparameters"] != trials[1]["hyperparameters"]
    winner = min(trials, key=lambda t: t["score"])  # val_loss: lower is better
    assert best == winner["hyperparameters"] == searched.hyperparameters
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_trial_id"] == winner["trial_id"]
    assert set(best) == set(SPACE)


def test_run_folder_holds_the_best_model_and_the_tuner(searched: tuning.TuneResult) -> None:
    out = searched.out
    for name in ("model.keras", "saved_model/saved_model.pb", "labels.txt", "config.json", "tuner/oracle.json"):
        assert (out / name).exists(), name
    assert (out / "labels.txt").read_text().split() == ["blue", "red"]
    assert not (out.parent / f".{out.name}.tuner").exists()  # moved into the run
    model = keras.saving.load_model(out / "model.keras", compile=False)
    best = searched.hyperparameters
    assert model.name == f"wrn_10_{best['width']}"
    assert model.get_layer("stage1_block1_conv1").filters == 16 * best["width"]
    has_dropout = any(layer.name.endswith("_dropout") for layer in model.layers)
    assert has_dropout == (best["block_dropout"] > 0)
    config = json.loads((out / "config.json").read_text())
    assert config["best_model"] == model.name and config["space"] == SPACE


def test_interrupted_search_resumes_without_redoing_trials(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    fitted: list[dict[str, Any]] = []
    real_fit = tuning.TransferHyperModel.fit

    def fit(self: Any, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        fitted.append(dict(hp.values))
        if stop_at and len(fitted) == stop_at:
            raise KeyboardInterrupt  # as a user's Ctrl-C mid-trial
        return real_fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(tuning.TransferHyperModel, "fit", fit)
    stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        tuning.tune("wrn_10_1", tiny_data, SPACE, max_trials=2, out=out, **OPTIONS)
    assert not out.exists() and (tmp_path / ".run.tuner" / "trial_0").is_dir()
    first, interrupted = fitted
    with pytest.raises(ConfigError, match="pass --resume to continue it or --overwrite"):
        tuning.tune("wrn_10_1", tiny_data, SPACE, max_trials=2, out=out, **OPTIONS)
    with pytest.raises(ConfigError, match="different space"):
        tuning.tune("wrn_10_1", tiny_data, {"width": [1, 4]}, max_trials=2, out=out, resume=True, **OPTIONS)

    stop_at, fitted[:] = 0, []
    result = tuning.tune("wrn_10_1", tiny_data, SPACE, max_trials=2, out=out, resume=True, **OPTIONS)
    assert fitted == [interrupted]  # only the unfinished trial ran, with its own values
    trials = json.loads((out / "trials.json").read_text())
    assert [t["hyperparameters"] for t in trials] == [first, interrupted]
    assert all(t["status"] == "COMPLETED" for t in trials) and result.out == out

    # A finished run continues too: more trials, the old ones kept.
    fitted[:] = []
    tuning.tune("wrn_10_1", tiny_data, SPACE, max_trials=3, out=out, resume=True, **OPTIONS)
    trials_after = json.loads((out / "trials.json").read_text())
    assert len(fitted) == 1 and len(trials_after) == 3
    assert trials_after[:2] == trials


def test_resume_with_nothing_saved_is_refused(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to resume"):
        tuning.tune("wrn_10_1", tiny_data, SPACE, max_trials=1, out=tmp_path / "none", resume=True, **OPTIONS)
    assert list(tmp_path.iterdir()) == []


def test_a_search_whose_every_trial_failed_writes_no_run(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fit(self: Any, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("broken trial")

    monkeypatch.setattr(tuning.TransferHyperModel, "fit", fit)
    with pytest.raises(ConfigError, match="no trial completed"):
        tuning.tune("wrn_10_1", tiny_data, SPACE, max_trials=2, out=tmp_path / "run", **OPTIONS)
    assert not (tmp_path / "run").exists()


def test_a_search_trains_on_mixup_batches_with_a_loss_for_mixed_labels(tiny_data: Path, tmp_path: Path) -> None:
    import numpy as np

    from transferkit.data.options import DataOptions

    # Mixed batches carry one-hot rows: with the integer-label loss every trial would fail on
    # their shape, and the search would end with "every trial failed".
    result = tuning.tune(
        "wrn_10_1", tiny_data, {"width": [1]}, max_trials=1, out=tmp_path / "run",
        **{**OPTIONS, "augment": True}, data_options=DataOptions(augment_spec="mixup=0.4"),
    )
    assert [t["status"] for t in result.trials] == ["COMPLETED"]
    mixed = np.array([[0.7, 0.3]], np.float32)
    predicted = np.array([[0.6, 0.4]], np.float32)
    by_hand = -(0.7 * np.log(0.6) + 0.3 * np.log(0.4))
    assert float(result.model.loss(mixed, predicted)) == pytest.approx(by_hand, rel=1e-5)
