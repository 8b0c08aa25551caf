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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transferkit.errors import ConfigError


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
