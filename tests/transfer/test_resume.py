"""Crash-safe runs: a run that dies mid-way carries on from its last epoch when started again."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.errors import ConfigError
from transferkit.runs.finetune import FinetuneConfig, finetune
from tuning.conftest import make_images


class Crash(keras.callbacks.Callback):
    """Dies at the end of an epoch (0-based, counted across phases), remembering the weights."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.kernel = at, None

    def on_epoch_end(self, epoch: int, logs=None) -> None:  # noqa: ANN001
        if epoch == self.at:
            self.kernel = np.array(self.model.get_layer("predictions").kernel.numpy(), copy=True)
            raise RuntimeError("simulated crash")


class Watch(keras.callbacks.Callback):
    """Counts the epochs run and keeps the weights the first fit starts from."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []
        self.start = None

    def on_train_begin(self, logs=None) -> None:  # noqa: ANN001
        if self.start is None:
            self.start = np.array(self.model.get_layer("predictions").kernel.numpy(), copy=True)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:  # noqa: ANN001
        self.epochs.append(epoch)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("resume") / "images", per_class=8)


def _config(images: Path, out: Path, **kwargs) -> FinetuneConfig:
    settings = dict(
        base="resnet20", weights=None, data=str(images), out=str(out), image_size=32, batch_size=8,
        epochs=2, fine_tune_epochs=3, unfreeze_from="stage3", augment=False, val_split=0.25,
    )
    return FinetuneConfig(**{**settings, **kwargs})


def test_a_crashed_run_resumes_at_its_next_epoch(images: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    progress = tmp_path / ".run.progress"
    crash = Crash(at=2)  # the first phase-2 epoch
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(_config(images, out), verbose=0, callbacks=[crash])
    assert not out.exists()  # no half-written run folder
    assert [r["epoch"] for r in json.loads((progress / "history.json").read_text())] == [1, 2, 3]
    assert (progress / "step0.weights.h5").is_file() and (progress / "step1").is_dir()

    watch = Watch()
    result = finetune(_config(images, out), verbose=1, callbacks=[watch])
    assert "resuming an interrupted run after epoch 3" in capsys.readouterr().err
    assert watch.epochs == [3, 4]  # only the two epochs left, not phase 1 again
    np.testing.assert_array_equal(watch.start, crash.kernel)  # from the crashed epoch's weights
    rows = json.loads((out / "metrics.json").read_text())["epochs"]
    assert [(r["epoch"], r["phase"]) for r in rows] == [
        (1, "head"), (2, "head"), (3, "fine_tune"), (4, "fine_tune"), (5, "fine_tune")
    ]
    assert all(np.isfinite(r["val_loss"]) for r in rows)
    assert result.out == out and (out / "model.keras").is_file()
    assert not progress.exists()


def test_other_settings_do_not_resume_by_mistake(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        finetune(_config(images, out), verbose=0, callbacks=[Crash(at=0)])
    with pytest.raises(ConfigError, match=r"other settings \(lr\).*--no-resume"):
        finetune(_config(images, out, lr=0.05), verbose=0)
    watch = Watch()
    finetune(_config(images, out, lr=0.05, resume=False), verbose=0, callbacks=[watch])
    assert watch.epochs == [0, 1, 2, 3, 4]  # started again
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 5
