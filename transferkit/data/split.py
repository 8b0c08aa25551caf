"""Stratified, seeded train/validation/test splits, their manifest (``split.csv``), and exact
duplicate files."""

from __future__ import annotations

import csv
import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from transferkit.errors import DataError

SPLITS = ("train", "val", "test")


def stratified_split(
    labels: Sequence[int],
    val_fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
    test_fraction: float = 0.0,
) -> list[str]:
    """Assigns each item to ``"train"``, ``"val"`` or ``"test"``, the same fractions of every class.

    The same labels, fractions and seed always give the same split. Every class gets at least one
    validation item (and one test item when ``test_fraction > 0``) and keeps at least one
    training item.

    Returns:
        A split name per item, in the items' order.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"the validation fraction must be between 0 and 1, got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"the test fraction must be 0 or more and leave training data (validation {val_fraction} "
            f"+ test {test_fraction} < 1), got {test_fraction}"
        )
    labels_arr = np.asarray(labels)
    splits = np.full(len(labels_arr), "train", dtype=object)
    rng = np.random.default_rng(seed)
    need = 2 + (test_fraction > 0)
    for label in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == label)
        if len(idx) < need:
            name = class_names[label] if class_names is not None else label
            held = "validation and test" if test_fraction > 0 else "validation"
            raise DataError(
                f"class {name!r} has {len(idx)} image(s); a train/{held} split needs at least {need} "
                "per class: add images to it or remove the class"
            )
        n_val = max(1, int(round(len(idx) * val_fraction)))
        n_test = max(1, int(round(len(idx) * test_fraction))) if test_fraction > 0 else 0
        while n_val + n_test > len(idx) - 1:
            if n_test > 1 and n_test >= n_val:
                n_test -= 1
            else:
                n_val -= 1
        order = rng.permutation(idx)
        splits[order[:n_val]] = "val"
        splits[order[n_val : n_val + n_test]] = "test"
    return [str(s) for s in splits]


def complete_split(
    given: Sequence[str],
    labels: Sequence[int],
    val_fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
) -> list[str]:
    """Uses the splits a source gives; when it has no validation data, carves it out of train."""
    splits = list(given)
    if "val" in splits:
        return splits
    train = [i for i, s in enumerate(splits) if s == "train"]
    carved = stratified_split([labels[i] for i in train], val_fraction, seed, class_names)
    for i, s in zip(train, carved):
        splits[i] = s
    return splits


def training_splits(
    labels: Sequence[int],
    given: Sequence[str],
    val_fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
    test_fraction: float = 0.0,
) -> list[str]:
    """The split the training commands make: the source's own (``given``, validation carved out of
    train when it has none), else a stratified one of every class."""
    if given:
        return complete_split(given, labels, val_fraction, seed, class_names)
    return stratified_split(labels, val_fraction, seed, class_names, test_fraction)


def write_manifest(
    path: str | os.PathLike[str],
    files: Sequence[str],
    labels: Sequence[int],
    splits: Sequence[str],
    class_names: Sequence[str],
) -> None:
    """Writes ``path,label,class,split`` rows: which file trained, which validated, which tests."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "class", "split"])
        for file, label, split in zip(files, labels, splits):
            writer.writerow([file, label, class_names[label], split])


@dataclass(frozen=True)
class Manifest:
    """A run's ``split.csv``: every file with its label and split.

    Attributes:
        files, labels, splits: One entry per row, in file order.
        class_names: Class of each label index (from the ``label``/``class`` columns).
    """

    files: tuple[str, ...]
    labels: tuple[int, ...]
    splits: tuple[str, ...]
    class_names: tuple[str, ...]

    def subset(self, split: str) -> tuple[list[str], list[int]]:
        """Files and labels of one split."""
        rows = [(f, y) for f, y, s in zip(self.files, self.labels, self.splits) if s == split]
        return [f for f, _ in rows], [y for _, y in rows]

    def held_out_split(self) -> str:
        """The split to score a model on: ``test`` when the run has one, else ``val``; never train."""
        return "test" if "test" in self.splits else "val"


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Reads a ``split.csv`` written by :func:`write_manifest` (what ``evaluate`` scores on).

    Raises:
        DataError: the file is missing or is not a manifest.
    """
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not {"path", "label", "split"} <= set(reader.fieldnames or []):
                raise DataError(f"{str(path)!r} is not a transferkit split.csv (needs path,label,class,split columns)")
            rows = list(reader)
    except OSError as err:
        raise DataError(f"cannot read split manifest {str(path)!r}: {err.strerror or err}") from None
    try:
        labels = tuple(int(r["label"]) for r in rows)
    except ValueError:
        raise DataError(f"{str(path)!r} has a non-integer label; is it a transferkit split.csv?") from None
    names: dict[int, str] = {y: r.get("class") or str(y) for y, r in zip(labels, rows)}
    class_names = tuple(names.get(i, str(i)) for i in range(max(labels, default=-1) + 1))
    return Manifest(
        files=tuple(r["path"] for r in rows),
        labels=labels,
        splits=tuple(r["split"] for r in rows),
        class_names=class_names,
    )


def file_digest(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def find_duplicates(files: Sequence[str], sizes: Sequence[int] | None = None) -> list[list[int]]:
    """Groups of indices of byte-identical files (each group sorted, at least 2 long).

    Only files whose size matches another file's are read, so a dataset without duplicates
    costs one ``stat`` per file.
    """
    if sizes is None or len(sizes) != len(files):
        sizes = [os.path.getsize(f) for f in files]
    by_size: dict[int, list[int]] = defaultdict(list)
    for i, size in enumerate(sizes):
        by_size[size].append(i)
    by_digest: dict[str, list[int]] = defaultdict(list)
    for group in by_size.values():
        if len(group) > 1:
            for i in group:
                try:
                    by_digest[file_digest(files[i])].append(i)
                except OSError:
                    continue
    return sorted(g for g in by_digest.values() if len(g) > 1)


def train_subset(labels: Sequence[int], splits: Sequence[str], fraction: float, seed: int) -> list[int]:
    """The indices kept when only ``fraction`` of every class's training items is used (at least
    one per class, seeded); the other splits' items are all kept, so validation is unchanged."""
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"the training fraction must be in (0, 1], got {fraction}")
    labels_arr, splits_arr = np.asarray(labels), np.asarray(splits, dtype=object)
    drop: set[int] = set()
    rng = np.random.default_rng(seed + 1)
    for label in np.unique(labels_arr):
        idx = np.flatnonzero((labels_arr == label) & (splits_arr == "train"))
        keep = max(1, int(round(len(idx) * fraction)))
        drop.update(rng.permutation(idx)[keep:].tolist())
    return [i for i in range(len(labels_arr)) if i not in drop]
