"""Data options shared by every command that reads a dataset, and their command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

CACHE_MODES = ("auto", "memory", "disk", "none")


@dataclass
class DataOptions:
    """How a dataset is read, split, cached and augmented (saved in a run's ``config.json``).

    Attributes:
        augment_spec: Augmentations when augmenting, e.g. ``"flip,rotation=0.1,crop,contrast"``
            (see :data:`transferkit.data.pipeline.AUGMENTATIONS`); None for the default
            ``flip,rotation,zoom``.
        class_weight: ``"auto"`` weighs each class by ``n / (classes * n_class)`` of the training
            split; None weighs all alike.
        test_split: Fraction of every class held out as a test split (0: none).
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


def add_data_arguments(parser: argparse.ArgumentParser, training: bool = True) -> None:
    """Adds the dataset flags (CSV columns, tfds, cache; with ``training`` also splits,
    augmentation and class weights) to a command's parser."""
    g = parser.add_argument_group("data")
    g.add_argument("--data-dir", default=None, help="tensorflow-datasets download/cache folder (for --data tfds:NAME)")
    g.add_argument(
        "--tfds-splits", default=None, metavar="MAP",
        help="tfds splits to use, e.g. 'train=train,val=validation,test=test' (default: the dataset's own)",
    )
    g.add_argument("--path-column", default="path", help="CSV column of image paths (default path)")
    g.add_argument("--label-column", default="label", help="CSV column of class labels (default label)")
    g.add_argument("--split-column", default="split", help="CSV column of splits, used when present (default split)")
    if not training:
        return
    g.add_argument("--test-split", type=float, default=0.0, help="fraction of every class held out for testing (default 0)")
    g.add_argument(
        "--augment", dest="augment_spec", default=None, metavar="SPEC",
        help="training augmentation, e.g. 'flip,rotation=0.1,zoom=0.2,crop=0.875,contrast=0.2' "
        "(default flip,rotation,zoom; 'none' for none; never applied to validation data)",
    )
    g.add_argument(
        "--class-weight", choices=("auto", "none"), default="none",
        help="'auto' weighs classes inversely to their training counts (imbalanced data)",
    )
    g.add_argument("--cache", choices=CACHE_MODES, default="auto", help="cache of decoded images (default auto)")
    g.add_argument("--cache-dir", default=None, help="folder of the disk cache")


def data_options_from_args(args: argparse.Namespace) -> DataOptions:
    """The :class:`DataOptions` of parsed :func:`add_data_arguments` flags."""
    d = DataOptions()
    return DataOptions(
        augment_spec=getattr(args, "augment_spec", d.augment_spec),
        class_weight=None if getattr(args, "class_weight", "none") == "none" else args.class_weight,
        test_split=getattr(args, "test_split", d.test_split),
        data_dir=args.data_dir,
        tfds_splits=args.tfds_splits,
        path_column=args.path_column,
        label_column=args.label_column,
        split_column=args.split_column,
        cache=getattr(args, "cache", d.cache),
        cache_dir=getattr(args, "cache_dir", d.cache_dir),
    )
