"""Data options shared by every command that reads a dataset (their flags live in the CLI)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_MODES = ("auto", "memory", "disk", "none")


def feature_cache_dir() -> Path:
    """Where cached features of frozen bases live: ``$TRANSFERKIT_CACHE/features``, else
    ``$XDG_CACHE_HOME/transferkit/features`` (``~/.cache/transferkit/features``). Here, with no
    Keras import, so the doctor can look for cached features without loading TensorFlow."""
    root = os.environ.get("TRANSFERKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transferkit"
    return Path(root).expanduser() / "features"


@dataclass
class DataOptions:
    """How a dataset is read, split, cached and augmented (saved in a run's ``config.json``).

    Attributes:
        augment_spec: Augmentations when augmenting, e.g. ``"flip,rotation=0.1,crop,contrast"``
            (see :data:`transferkit.data.pipeline.AUGMENTATIONS`), ``randaugment``, and the batch
            mixes ``mixup=ALPHA`` and ``cutmix=ALPHA`` (:data:`~transferkit.data.pipeline.MIXES`,
            one-hot labels); None for the default ``flip,rotation,zoom``.
        class_weight: ``"auto"`` weighs each class by ``n / (classes * n_class)`` of the training
            split; None weighs all alike.
        test_split: Fraction of every class held out as a test split (0: none).
        train_fraction: Train on this fraction of every class's training images (stratified,
            seeded, chosen after the split so validation is the same); 1 uses them all.
        data_dir: tensorflow-datasets download and cache folder (tfds' default when None).
        tfds_splits: tfds split mapping, e.g. ``"train=train,val=validation,test=test"``.
        path_column, label_column, split_column: CSV column names.
        cache: ``auto`` (memory when the decoded images fit comfortably, else disk), ``memory``,
            ``disk`` or ``none``.
        cache_dir: Folder of the disk cache (a folder in the system temp dir when None).
    """

    augment_spec: str | None = None
    class_weight: str | None = None
    test_split: float = 0.0
    train_fraction: float = 1.0
    data_dir: str | None = None
    tfds_splits: str | None = None
    path_column: str = "path"
    label_column: str = "label"
    split_column: str = "split"
    cache: str = "auto"
    cache_dir: str | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`transferkit.data.load_data`."""
        return dataclasses.asdict(self)
