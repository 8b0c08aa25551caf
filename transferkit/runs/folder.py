"""The run folder: every artifact of a training run, written atomically.

A run is written into a hidden ``.<name>.partial`` folder beside its destination and renamed into
place only when complete, so a failed or interrupted run never leaves a half-written folder and
``--overwrite`` replaces an old run only once the new one is whole.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras

from transferkit._version import __version__
from transferkit.errors import ConfigError
from transferkit.runs.serving import ServedModel, export_saved_model, is_saved_model


def check_out_dir(out: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuses an existing destination unless ``overwrite``; checked before any work starts."""
    path = Path(out).expanduser()
    if path.exists() and not overwrite:
        raise ConfigError(
            f"output folder {str(path)!r} already exists; choose another --out or pass --overwrite"
        )
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output path {str(path)!r} is a file; choose a folder path for --out")
    return path


@contextmanager
def run_folder(out: Path) -> Iterator[Path]:
    """Yields a scratch folder that becomes ``out`` when the block finishes without error."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(out)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_labels(path: Path, class_names: Sequence[str]) -> None:
    path.write_text("".join(f"{name}\n" for name in class_names))


def read_labels(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]


def write_history(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Per-epoch metrics as CSV, one row per epoch across all phases."""
    if not rows:
        path.write_text("")
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def read_history(path: Path) -> list[dict[str, str]]:
    """The rows of a run's ``history.csv`` (none when it is absent)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def history_rows(history: keras.callbacks.History, phase: str, first_epoch: int) -> list[dict[str, Any]]:
    metrics = history.history
    n = len(next(iter(metrics.values()), []))
    return [
        {"epoch": first_epoch + i + 1, "phase": phase, **{k: float(v[i]) for k, v in metrics.items()}}
        for i in range(n)
    ]


DEFAULT_ROOT = "runs"
"""Where run folders go when no ``--out`` is given."""


def default_out(base: str, mode: str = "") -> str:
    """A new run folder name, ``runs/<base>[-<mode>]-<time>``."""
    return f"{DEFAULT_ROOT}/{base}-{mode + '-' if mode else ''}{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class RunResult:
    """What a run produced."""

    out: Path | None  # None on a multi-worker cluster's non-chief workers
    val_accuracy: float
    model: keras.Model
    class_names: tuple[str, ...]
    history: list[dict[str, Any]]


def write_run(
    out_dir: Path,
    model: keras.Model,
    data: Any,
    rows: list[dict[str, Any]],
    val_accuracy: float,
    val_loss: float,
    config: dict[str, Any],
    *,
    metrics: dict[str, Any] | None = None,
    files: dict[str, Any] | None = None,
    move_in: dict[str, Path] | None = None,
) -> RunResult:
    """Writes a run folder atomically; the one writer of every command that makes a run folder.

    The folder holds ``model.keras``, ``saved_model/``, ``labels.txt``, ``history.csv`` (when
    there are epoch rows), ``metrics.json``, ``config.json``, ``split.csv`` (when the data has a
    manifest), ``skipped.txt`` and ``report/`` (the validation split's report and plots, see
    :func:`write_val_report`); ``files`` adds JSON files by name, ``move_in`` moves folders in
    last (one rename each), e.g. a finished search's tuner project.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        # A step trained on the frozen layers' cached output trained the head model's optimizer,
        # not this one; loading builds it for the trainable variables, and would warn that the
        # saved one (never built) has fewer variables.
        optimizer.build(model.trainable_variables)
    with run_folder(out_dir) as tmp:
        model.save(tmp / "model.keras")
        export_saved_model(model, tmp / "saved_model", data.class_names)
        write_labels(tmp / "labels.txt", data.class_names)
        if rows:
            write_history(tmp / "history.csv", rows)
        write_json(
            tmp / "metrics.json",
            {
                "val_accuracy": float(val_accuracy),
                "val_loss": float(val_loss),
                "num_train": data.count("train"),
                "num_val": data.count("val"),
                "epochs": rows,
                **(metrics or {}),
            },
        )
        write_json(
            tmp / "config.json",
            {**config, "out": str(out_dir), "class_names": list(data.class_names), "transferkit_version": __version__},
        )
        for name, content in (files or {}).items():
            write_json(tmp / name, content)
        if data.files:
            data.write_manifest(tmp / "split.csv")
        if data.skipped:
            (tmp / "skipped.txt").write_text("".join(f"{p}\t{why}\n" for p, why in data.skipped))
        write_val_report(tmp / "report", model, data, rows)
        for name, folder in (move_in or {}).items():
            shutil.move(str(folder), str(tmp / name))
    return RunResult(out_dir, float(val_accuracy), model, data.class_names, rows)


def write_val_report(folder: Path, model: keras.Model, data: Any, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The report ``transferkit evaluate`` writes, on the run's validation split: ``report.md``,
    ``report.json``, the confusion matrix, per-class scores, calibration, the training curves with
    the phase boundary marked, and the most confident mistakes (when the data has files).

    Images go through the same decode road as ``predict`` and ``evaluate``; data without files
    (tensorflow-datasets) is scored on its validation batches.
    """
    import numpy as np

    from transferkit.inference import Images, score
    from transferkit.inference.report import write_report

    names = list(data.class_names)
    val = [(f, y) for f, y, s in zip(data.files, data.labels, data.splits) if s == "val"]
    if val:
        images = Images([f for f, _ in val], [y for _, y in val], names, source="the run's val split")
        scores = score(model, names, images)
        return write_report(folder, scores.truth, scores.scores, names, files=scores.files, history=rows)
    truth, probs = [], []
    for x, y in data.val if data.val is not None else ():
        y = np.asarray(y)
        truth.append(y.argmax(axis=-1) if y.ndim == 2 else y)  # one-hot labels of a mixup/cutmix run
        probs.append(np.asarray(model.predict_on_batch(x)))
    if not truth:
        return {}
    return write_report(folder, np.concatenate(truth), np.concatenate(probs), names, history=rows)


@dataclass
class OpenedRun:
    """A model to use: a run folder's (or a ``.keras`` file's) model with what the folder says of it.

    Attributes:
        model: The Keras model.
        class_names: Its classes in output order (``labels.txt``; numbers when there is none).
        folder: The run folder, or None for a lone ``.keras`` file.
        manifest: The run's ``split.csv``, if any.
        history: The run's ``history.csv`` rows, if any.
    """

    model: keras.Model
    class_names: list[str]
    folder: Path | None = None
    manifest: Any = None
    history: list[dict[str, str]] | None = None


def find_model(path: str | os.PathLike[str]) -> Path | None:
    """What :func:`open_run` opens at ``path``: a run folder's ``model.keras`` (before its
    SavedModel), a SavedModel folder with transferkit's serving signatures (``path`` or its
    ``saved_model/``), or a ``.keras`` file; None when ``path`` is none of these."""
    given = Path(path).expanduser()
    if given.is_dir() and (given / "model.keras").is_file():
        return given / "model.keras"
    for folder in (given, given / "saved_model"):
        if is_saved_model(folder):
            return folder
    return given if given.is_file() and given.suffix == ".keras" else None


def open_run(path: str | os.PathLike[str]) -> OpenedRun:
    """Opens a run folder, a ``.keras`` file, or a SavedModel with transferkit's serving
    signatures (a run's ``saved_model/``, or a ``transferkit export`` folder holding one).

    Raises:
        ConfigError: ``path`` is none of these.
    """
    import transferkit.models  # noqa: F401  (registers the custom layers a .keras file may hold)
    import transferkit.transfer  # noqa: F401  (registers the optimizers)
    from transferkit.data.split import read_manifest

    given = Path(path).expanduser()
    file = find_model(given)
    if file is None:
        raise ConfigError(
            f"--model must be a run folder or a .keras file (or an exported SavedModel folder), got {str(path)!r}"
        )
    if file.is_dir():
        served = ServedModel(file)
        return OpenedRun(served, served.class_names)  # type: ignore[arg-type]
    model = keras.saving.load_model(file, compile=False)
    folder = file.parent
    shape = model.output_shape[0] if isinstance(model.output_shape, list) else model.output_shape
    labels = folder / "labels.txt"
    names = read_labels(labels) if labels.is_file() else [str(i) for i in range(shape[-1])]
    manifest = read_manifest(folder / "split.csv") if (folder / "split.csv").is_file() else None
    history = read_history(folder / "history.csv") if (folder / "history.csv").is_file() else None
    return OpenedRun(model, names, folder if given.is_dir() else None, manifest, history)
