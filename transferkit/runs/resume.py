"""Crash-safe, resumable training: rerun the same command after a crash and it carries on.

While a run trains, its progress lives in a hidden ``.<name>.progress`` folder beside the run
folder (which itself appears only when the run is complete, see :mod:`transferkit.runs`):

* ``config.json``: the settings, so a rerun with other settings is not mistaken for a resume;
* ``history.json``: one row per finished epoch, across phases;
* ``step<k>.weights.h5``: the model after each finished training step (phase 1, then each
  phase-2 step of gradual unfreezing);
* ``step<k>/``: Keras' own ``BackupAndRestore`` checkpoint (weights, optimizer state, epoch) of
  the step in progress, written after every epoch (with a backup copy in case a crash cuts a
  write short).

A rerun skips the finished steps (loading the weights after the last of them) and Keras resumes
the step in progress at its next epoch. The folder is deleted once the run folder is written.
Every file is written to a temporary name and renamed, so a crash never leaves half a file that
a resume would trust.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import keras

from transferkit.errors import ConfigError

IGNORED = ("overwrite", "resume", "out")  # settings that do not change what trains


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide what trains, as JSON values."""
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in IGNORED}, default=str))


def interrupted_run(parent: Path, prefix: str, config: dict[str, Any]) -> Path | None:
    """The destination of an interrupted run under ``parent`` (named ``prefix...``) whose settings
    are ``config``, if there is one: how a rerun without ``--out`` finds the run to resume."""
    for folder in sorted(parent.glob(f".{prefix}*.progress"), reverse=True):
        saved = folder / "config.json"
        try:
            same = json.loads(saved.read_text()) == _comparable(config)
        except (OSError, ValueError):
            continue
        if same:
            return parent / folder.name[1 : -len(".progress")]
    return None


class Progress:
    """The progress folder of one run (see the module docstring)."""

    def __init__(self, out: Path, config: dict[str, Any], resume: bool = True, suffix: str = "") -> None:
        self.folder = out.parent / f".{out.name}.progress{suffix}"
        settings = _comparable(config)
        saved = self.folder / "config.json"
        if self.folder.exists() and not resume:
            shutil.rmtree(self.folder)
        if saved.exists():
            previous = json.loads(saved.read_text())
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            if changed:
                raise ConfigError(
                    f"{out} has an interrupted run with other settings ({', '.join(changed)}); rerun with its "
                    f"settings to resume it, or pass --no-resume to start again (discards {self.folder})"
                )
        self.folder.mkdir(parents=True, exist_ok=True)
        _write(saved, settings)
        state = self.folder / "history.json"
        self.rows: list[dict[str, Any]] = json.loads(state.read_text()) if state.exists() else []
        self.done = 0
        while (self.folder / f"step{self.done}.weights.h5").exists():
            self.done += 1

    @property
    def resuming(self) -> bool:
        return bool(self.rows) or self.done > 0

    def callbacks(self, step: int, phase: str) -> list[keras.callbacks.Callback]:
        """Keras' BackupAndRestore for ``step``, then the history recorder."""
        return [
            keras.callbacks.BackupAndRestore(str(self.folder / f"step{step}"), double_checkpoint=True),
            _Recorder(self, phase),
        ]

    def restore(self, model: keras.Model, step: int) -> None:
        """Loads the weights after finished step ``step - 1`` (nothing before the first step;
        after the last step, the trained weights of a run that stopped while writing its folder)."""
        if step > 0:
            model.load_weights(self.folder / f"step{step - 1}.weights.h5")

    def finish_step(self, model: keras.Model, step: int) -> None:
        path = self.folder / f"step{step}.weights.h5"
        tmp = path.with_name(f"partial-{path.name}")
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, path)
        self.done = step + 1

    def restart_step(self, step: int, first_epoch: int) -> None:
        """Forgets the unfinished ``step`` (its checkpoint, and its epochs after ``first_epoch``),
        so that it trains again from the weights of the step before it."""
        shutil.rmtree(self.folder / f"step{step}", ignore_errors=True)
        self.rows = [r for r in self.rows if r["epoch"] <= first_epoch]
        _write(self.folder / "history.json", self.rows)

    def remember(self, name: str, compute: Any) -> Any:
        """``compute()``, kept as JSON in ``name`` so that a resumed run reuses the value (the
        rates ``--lr auto`` chose) instead of computing it again."""
        path = self.folder / name
        if path.exists():
            return json.loads(path.read_text())
        value = compute()
        _write(path, value)
        return value

    def record(self, row: dict[str, Any]) -> None:
        # A row of an epoch being rerun (its checkpoint was older than the row) replaces the old one.
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        _write(self.folder / "history.json", self.rows)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _Recorder(keras.callbacks.Callback):
    def __init__(self, progress: Progress, phase: str) -> None:
        super().__init__()
        self.progress, self.phase = progress, phase

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.progress.record({"epoch": epoch + 1, "phase": self.phase, **{k: float(v) for k, v in (logs or {}).items()}})


def _write(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
