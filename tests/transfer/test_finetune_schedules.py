"""finetune's --schedule (the learning rate of every step of each phase, against the formulas
computed here), --early-stopping (the run stops, and keeps the best epoch's weights), how both
resume, and their bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.cli import main
from transferkit.runs.finetune import FinetuneConfig, finetune
from random_init import random_init
from transfer.test_resume import Crash, Watch
from tuning.conftest import make_images


class _Rates(keras.callbacks.Callback):
    """The optimizer's learning rate at every training step, by step, one dict per ``fit``."""

    def __init__(self) -> None:
        super().__init__()
        self.fits: list[dict[int, float]] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.fits.append({})

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        optimizer = self.model.optimizer
        self.fits[-1][int(optimizer.iterations)] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _cosine(lr: float, step: int, total: int) -> float:
    return lr * 0.5 * (1 + math.cos(math.pi * step / total))


def _one_cycle(lr: float, step: int, total: int) -> float:
    """Smith & Topin's one cycle as fastai runs it, without momentum: from lr/25 up to lr over 30%
    of the steps (linearly here), then cosine down to 0."""
    warm = round(0.3 * total)
    if step < warm:
        return lr / 25 + (lr - lr / 25) * step / warm
    return _cosine(lr, step - warm, total - warm)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("schedules") / "images", per_class=12)


def _config(images: Path, out: Path, **kwargs) -> FinetuneConfig:
    settings = dict(
        base="resnet20", weights=random_init(images.parent / "init.weights.h5"), data=str(images), out=str(out),
        image_size=32, batch_size=4, epochs=2, fine_tune_epochs=2, unfreeze_from="stage3", augment=False,
        val_split=0.25, lr=0.01,
    )
    return FinetuneConfig(**{**settings, **kwargs})


@pytest.mark.parametrize("schedule,formula", [("cosine", _cosine), ("one-cycle", _one_cycle)])
def test_each_phase_follows_the_schedule(images: Path, tmp_path: Path, schedule: str, formula) -> None:  # noqa: ANN001
    rates = _Rates()
    finetune(_config(images, tmp_path / "run", schedule=schedule), verbose=0, callbacks=[rates])
    per_epoch = math.ceil(18 / 4)  # 24 images, a quarter held out: 18 train, 5 steps of 4
    total = 2 * per_epoch
    assert [sorted(f) for f in rates.fits] == [list(range(total))] * 2
    for fit, lr in zip(rates.fits, (0.01, 0.01 / 100)):  # phase 2 at lr / 100
        expected = [formula(lr, s, total) for s in range(total)]
        np.testing.assert_allclose([fit[s] for s in range(total)], expected, rtol=1e-5, atol=1e-12)


def test_the_constant_schedule_is_todays(images: Path, tmp_path: Path) -> None:
    rates = _Rates()
    finetune(_config(images, tmp_path / "run"), verbose=0, callbacks=[rates])
    assert [set(np.round(list(f.values()), 9)) for f in rates.fits] == [{0.01}, {0.0001}]


def test_a_crashed_run_resumes_on_its_schedule(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(_config(images, out, schedule="cosine"), verbose=0, callbacks=[Crash(at=2)])
    rates = _Rates()
    finetune(_config(images, out, schedule="cosine"), verbose=0, callbacks=[rates])
    # Only phase 2's second epoch is left: it carries on from the restored optimizer's step.
    per_epoch, total = 5, 10
    assert sorted(rates.fits[0]) == list(range(per_epoch, total))
    np.testing.assert_allclose(
        [rates.fits[0][s] for s in range(per_epoch, total)], [_cosine(1e-4, s, total) for s in range(per_epoch, total)],
        rtol=1e-5,
    )


class _Kernels(keras.callbacks.Callback):
    """The new head's kernel at the end of every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.by_epoch: dict[int, np.ndarray] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.by_epoch[epoch + 1] = np.array(self.model.get_layer("predictions").kernel.numpy(), copy=True)


def test_early_stopping_stops_and_keeps_the_best_epoch(images: Path, tmp_path: Path) -> None:
    # A rate far too high for Adam makes the validation loss jump about: it must stop early.
    kernels = _Kernels()
    result = finetune(
        _config(images, tmp_path / "run", lr=0.5, epochs=12, fine_tune_epochs=0, early_stopping=2),
        verbose=0, callbacks=[kernels],
    )
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    losses = [r["val_loss"] for r in rows]
    best = int(np.argmin(losses))
    assert len(rows) < 12  # stopped early
    assert len(rows) == best + 1 + 2  # two epochs without a better validation loss after the best one
    saved = keras.saving.load_model(tmp_path / "run" / "model.keras")
    np.testing.assert_array_equal(saved.get_layer("predictions").kernel.numpy(), kernels.by_epoch[rows[best]["epoch"]])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(losses[best], rel=1e-4)  # evaluated again on the saved weights
    assert result.out == tmp_path / "run"


class _Ends(keras.callbacks.Callback):
    """The new head's kernel at the end of every ``fit`` that finishes."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels: list[np.ndarray] = []

    def on_train_end(self, logs: dict | None = None) -> None:
        self.kernels.append(np.array(self.model.get_layer("predictions").kernel.numpy(), copy=True))


def test_early_stopping_resumes_an_interrupted_phase_from_its_start(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Early stopping's best weights and patience live in memory: a phase it watched, cut short,
    # trains again from the weights the phase started with, and keeps none of its old epochs.
    out = tmp_path / "run"
    ends, crash = _Ends(), Crash(at=2)  # phase 2's first epoch
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(_config(images, out, early_stopping=3), verbose=0, callbacks=[ends, crash])
    assert len(ends.kernels) == 1  # phase 1 finished, phase 2 did not
    watch = Watch()
    result = finetune(_config(images, out, early_stopping=3), verbose=1, callbacks=[watch])
    assert "resuming an interrupted run, at the start of the phase it was in (epoch 3" in capsys.readouterr().err
    assert watch.epochs == [2, 3]  # all of phase 2, not the epoch after the checkpoint
    np.testing.assert_array_equal(watch.start, ends.kernels[0])  # from phase 1's weights
    assert not np.array_equal(watch.start, crash.kernel)  # not the crashed epoch's
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert (out / "model.keras").is_file() and not (tmp_path / ".run.progress").exists()


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["lr-find", "--start-lr", "1", "--end-lr", "0.1"], "end_lr must be above start_lr, got start_lr 1.0 and end_lr 0.1"),
        (["lr-find", "--start-lr", "0.1", "--end-lr", "0.1"], "end_lr must be above start_lr"),
        (["lr-find", "--steps", "1"], "steps must be at least 2"),
        (["lr-find", "--start-lr", "0"], "start_lr must be positive"),
        (["lr-find", "--phase", "fine_tune", "--lr", "-1"], "lr must be positive"),
        (["finetune", "--lr", "fast"], "--lr: expected a number or 'auto', got 'fast'"),
        (["finetune", "--lr", "auto", "--distribute", "multi_worker"], "--lr auto cannot run on a multi-worker cluster"),
        (["finetune", "--schedule", "cosine", "--gradual", "2"], "--schedule follows one phase"),
        (["finetune", "--schedule", "linear"], "invalid choice: 'linear'"),
        (["finetune", "--early-stopping", "0"], "--early-stopping: expected a number of at least 1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    argv: list[str], expect: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--data", "sample", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert list(tmp_path.iterdir()) == []
