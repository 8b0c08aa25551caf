"""Stratified, seeded train/validation splits and their manifest (``split.csv``)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np

from transferkit.errors import DataError


def stratified_split(
    labels: Sequence[int],
    val_fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
) -> list[str]:
    """Assigns each item to ``"train"`` or ``"val"``, the same fraction of every class.

    The same labels, fraction and seed always give the same split. Every class gets at least one
    validation and one training item.

    Returns:
        A split name per item, in the items' order.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"the validation fraction must be between 0 and 1, got {val_fraction}")
    labels_arr = np.asarray(labels)
    splits = np.full(len(labels_arr), "train", dtype=object)
    rng = np.random.default_rng(seed)
    for label in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == label)
        if len(idx) < 2:
            name = class_names[label] if class_names is not None else label
            raise DataError(
                f"class {name!r} has {len(idx)} image; a train/validation split needs at least 2 "
                "per class: add images to it or remove the class"
            )
        n_val = min(len(idx) - 1, max(1, int(round(len(idx) * val_fraction))))
        splits[rng.permutation(idx)[:n_val]] = "val"
    return [str(s) for s in splits]


def write_manifest(
    path: str | os.PathLike[str],
    files: Sequence[str],
    labels: Sequence[int],
    splits: Sequence[str],
    class_names: Sequence[str],
) -> None:
    """Writes ``path,label,class,split`` rows: which file trained and which validated."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "class", "split"])
        for file, label, split in zip(files, labels, splits):
            writer.writerow([file, label, class_names[label], split])
