"""What the training runs (``finetune`` and ``train``) share: the run folder's place, the log,
the data and model lines, ``fit`` over Keras' callbacks, and the final evaluation and write."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras

from transferkit import transfer
from transferkit.models import get_model_info
from transferkit.runs import distribute
from transferkit.runs.folder import DEFAULT_ROOT, RunResult, check_out_dir, default_out, write_run
from transferkit.runs.resume import Progress, interrupted_run


@contextmanager
def strategy_scope(distribution: str | None, mixed_precision: str | None) -> Iterator[Any]:
    """Yields the run's distribution strategy (made before TensorFlow runs anything), with the
    precision policy and the strategy's scope in force."""
    strategy = distribute.make_strategy(distribution)
    with transfer.precision(mixed_precision), distribute.scope(strategy):
        yield strategy


def out_dir(out: str | None, base: str, settings: dict[str, Any], chief: bool, resume: bool, overwrite: bool) -> Path:
    """The run folder: ``out``; without it, the folder of an interrupted run with the same
    settings (so rerunning the same command resumes it), else a new ``runs/<base>-<time>``.
    Refused when it exists (unless ``overwrite``); a non-chief worker writes nothing there."""
    if out:
        path = Path(out)
    else:
        name = get_model_info(base).name
        found = interrupted_run(Path(DEFAULT_ROOT), f"{name}-", settings) if resume else None
        path = found or Path(default_out(name))
    return check_out_dir(path, overwrite) if chief else path.expanduser()


def logger(verbose: int) -> Callable[[str], None]:
    return (lambda msg: print(msg, file=sys.stderr)) if verbose else (lambda msg: None)


def announce(log: Callable[[str], None], base: str, weights: Any, data: Any, size: int, strategy: Any, distribution: str | None) -> None:
    """The run's first log lines: the model, the data, and what the data loader noted."""
    log(
        f"transferkit: {base} ({weights or 'random init'}) on {data.count('train')} "
        f"training / {data.count('val')} validation images, {data.num_classes} classes, {size}px"
        + (f", {distribute.replicas(strategy)} replicas ({distribution})" if strategy is not None else "")
    )
    if data.skipped:
        log(f"transferkit: skipped {len(data.skipped)} files that cannot be used as images (see skipped.txt)")
    for note in data.notes:
        log(f"transferkit: {note}")


def progress(out: Path, settings: dict[str, Any], resume: bool, chief: bool, strategy: Any) -> Progress:
    return Progress(out, settings, resume, "" if chief else f".{distribute.task_name(strategy)}")


def tensorboard(progress: Progress, enabled: bool) -> list[keras.callbacks.Callback]:
    """Keras' TensorBoard callback writing into the progress folder's ``tensorboard/`` (moved
    into the run folder by :func:`finish`), when ``enabled``."""
    return [keras.callbacks.TensorBoard(log_dir=str(progress.folder / "tensorboard"))] if enabled else []


def fit(model: keras.Model, train: Any, val: Any, class_weight: Any, **kwargs: Any) -> keras.callbacks.History:
    distribute.build_from_local_batch(model, train)
    try:
        return model.fit(train, validation_data=val, shuffle=False, class_weight=class_weight, **kwargs)
    finally:
        # BackupAndRestore sets the epoch to resume from on the model, and fit never clears it.
        model._initial_epoch = None


def finish(
    model: keras.Model, data: Any, rows: list[dict[str, Any]], out: Path, settings: dict[str, Any],
    mode: str, strategy: Any, chief: bool, done: Progress, metrics: dict[str, Any] | None = None,
) -> RunResult:
    """Evaluates ``model`` on the validation data, writes the run folder (the chief only) and
    removes the progress folder."""
    distribute.build_from_local_batch(model, data.val)
    val_loss, val_accuracy = model.evaluate(data.val, verbose=0)
    with distribute.out_dir(out, chief) as where:
        result = write_run(
            where, model, data, rows, float(val_accuracy), float(val_loss),
            {**settings, "mode": mode, "num_replicas": distribute.replicas(strategy)}, metrics=metrics,
            move_in={"tensorboard": logs} if (logs := done.folder / "tensorboard").is_dir() else None,
        )
    done.remove()
    return result if chief else dataclasses.replace(result, out=None)
