"""Crash-safe runs: a run that dies mid-way carries on from its last epoch when started again."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.errors import ConfigError
from transferkit.runs.finetune import FinetuneConfig, finetune
from random_init import random_init
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


def _config(images: Path, out: Path | None, **kwargs) -> FinetuneConfig:
    settings = dict(
        base="resnet20", weights=random_init(images.parent / "init.weights.h5"), data=str(images), out=None if out is None else str(out), image_size=32, batch_size=8,
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
    assert "resuming an interrupted run, after epoch 3" in capsys.readouterr().err
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


def _crash_after_training(monkeypatch: pytest.MonkeyPatch, where: str) -> list[np.ndarray]:
    """Makes the run die after its last epoch: after it evaluated, before its folder is written, or
    half-way through the SavedModel export (model.keras already in the partial folder). Returns
    a list that receives the trained model's weights at the crash."""
    import transferkit.runs.common as common_module  # the run folder is written from here
    import transferkit.runs.folder as folder_module

    trained: list[np.ndarray] = []

    def die(model: keras.Model) -> None:
        trained.extend(np.array(w, copy=True) for w in model.get_weights())
        raise KeyboardInterrupt  # Ctrl-C, the hardest stop a process survives to report

    if where == "before-export":
        monkeypatch.setattr(common_module, "write_run", lambda where, model, *args, **kwargs: die(model))
    else:
        real = folder_module.export_saved_model

        def half(model: keras.Model, path: Path, *args: object) -> None:
            real(model, path, *args)
            die(model)

        monkeypatch.setattr(folder_module, "export_saved_model", half)
    return trained


@pytest.mark.parametrize("where", ["mid-phase-1", "mid-phase-2", "before-export", "mid-export"])
def test_a_run_resumes_from_any_crash_point(
    where: str, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        if where.startswith("mid-phase"):
            with pytest.raises(RuntimeError, match="simulated crash"):
                finetune(_config(images, out), verbose=0, callbacks=[Crash(at=0 if where == "mid-phase-1" else 3)])
        else:
            trained = _crash_after_training(patch, where)
            with pytest.raises(KeyboardInterrupt):
                finetune(_config(images, out), verbose=0)
    assert not out.exists() and not (tmp_path / ".run.partial").exists()

    watch = Watch()
    result = finetune(_config(images, out), verbose=0, callbacks=[watch])
    expected = {"mid-phase-1": [1, 2, 3, 4], "mid-phase-2": [4]}.get(where, [])
    assert watch.epochs == expected  # finished epochs are never trained again
    assert result.out == out
    if not expected:
        # Nothing retrained: the folder holds exactly the weights training ended with.
        saved = keras.saving.load_model(out / "model.keras", compile=False)
        assert len(saved.get_weights()) == len(trained)
        for mine, theirs in zip(saved.get_weights(), trained):
            np.testing.assert_array_equal(mine, theirs)
    assert (out / "saved_model" / "saved_model.pb").is_file() and (out / "labels.txt").is_file()
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 5
    assert not (tmp_path / ".run.progress").exists()


def test_rerunning_the_same_command_without_out_resumes(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as patch:
        trained = _crash_after_training(patch, "before-export")
        with pytest.raises(KeyboardInterrupt):
            finetune(_config(images, None), verbose=0)
    (progress,) = (tmp_path / "runs").glob(".resnet20-*.progress")

    watch = Watch()
    result = finetune(_config(images, None), verbose=0, callbacks=[watch])
    assert watch.epochs == []  # the interrupted run was found and completed, not started again
    assert result.out == Path("runs") / progress.name[1 : -len(".progress")]
    assert (tmp_path / result.out / "model.keras").is_file() and not progress.exists()
    for mine, theirs in zip(result.model.get_weights(), trained):
        np.testing.assert_array_equal(mine, theirs)

    # A finished run is not resumed: the same command makes a new run folder.
    other = finetune(_config(images, None, epochs=1, fine_tune_epochs=0), verbose=0)
    assert other.out != result.out
