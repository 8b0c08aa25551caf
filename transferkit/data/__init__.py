"""Datasets: one interface for every source (train/validation pipelines plus class names)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.data.folder import FolderIndex, index_folder
from transferkit.data.split import stratified_split, write_manifest
from transferkit.errors import DataError

SAMPLE_NAME = "sample"
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "assets" / "sample"


@dataclass
class DataBundle:
    """What training needs from a dataset.

    Attributes:
        train: Batches of (float32 0-255 RGB images, int32 labels), shuffled and augmented.
        val: Validation batches, never augmented.
        class_names: Class of each label index.
        files, labels, splits: The manifest: every file, its label and its split.
        skipped: Files left out, as (path, reason).
    """

    train: Any
    val: Any
    class_names: tuple[str, ...]
    files: tuple[str, ...] = ()
    labels: tuple[int, ...] = ()
    splits: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    test: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def count(self, split: str) -> int:
        return sum(1 for s in self.splits if s == split)

    def write_manifest(self, path: str | os.PathLike[str]) -> None:
        write_manifest(path, self.files, self.labels, self.splits, self.class_names)


def resolve_source(source: str | os.PathLike[str]) -> Path:
    """The folder a ``--data`` value names; ``sample`` is the small dataset shipped in the package."""
    if str(source) == SAMPLE_NAME:
        if Path(SAMPLE_NAME).exists():
            raise DataError(
                "'sample' names both the built-in sample dataset and ./sample here; "
                "write ./sample for your folder"
            )
        return SAMPLE_DIR
    return Path(source)


def index_source(source: str | os.PathLike[str]) -> FolderIndex:
    """Indexes a data source without decoding any image (fast checks before training)."""
    return index_folder(resolve_source(source))


def load_data(
    source: str | os.PathLike[str],
    image_size: int,
    batch_size: int = 32,
    val_split: float = 0.2,
    seed: int = 0,
    augment: bool = True,
) -> DataBundle:
    """Loads a dataset as train/validation tf.data pipelines.

    Args:
        source: A folder of class sub-folders, or ``"sample"`` for the built-in ants/bees sample.
        image_size: Side of the square images the model takes.
        batch_size: Batch size.
        val_split: Fraction of each class held out for validation (stratified, seeded).
        seed: Seed of the split, the shuffling and the augmentation.
        augment: Random flip/rotation/zoom on training batches.
    """
    from transferkit.data.pipeline import default_augmentation, make_dataset

    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    index = index_source(source)
    splits = stratified_split(index.labels, val_split, seed, index.class_names)
    subsets = {
        name: [(f, y) for f, y, s in zip(index.files, index.labels, splits) if s == name]
        for name in ("train", "val")
    }
    augmentation = default_augmentation(seed) if augment else None
    pipes = {
        name: make_dataset(
            [f for f, _ in rows],
            [y for _, y in rows],
            image_size,
            batch_size,
            training=name == "train",
            seed=seed,
            augmentation=augmentation,
        )
        for name, rows in subsets.items()
    }
    return DataBundle(
        train=pipes["train"],
        val=pipes["val"],
        class_names=index.class_names,
        files=index.files,
        labels=index.labels,
        splits=tuple(splits),
        skipped=index.skipped,
    )


__all__ = ["DataBundle", "index_source", "load_data", "resolve_source", "SAMPLE_DIR"]
