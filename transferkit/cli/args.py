"""Argument helpers shared by every command: number types and the dataset flags."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

from transferkit.data.options import CACHE_MODES, DataOptions


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


Config = TypeVar("Config")


def config_from_args(cls: type[Config], args: argparse.Namespace, **values: Any) -> Config:
    """A run's config dataclass from parsed flags, through the notebook API's
    :func:`~transferkit.runs.config.make_config` (so ``tk.finetune(**options)`` and the flags give
    the same config): each field of ``cls`` or of its data options that a flag set (flags are
    named after the fields), ``weights`` with ``none`` as random init, and ``values`` on top."""
    from transferkit.runs.config import make_config

    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if "data_options" in names:
        names |= {f.name for f in dataclasses.fields(DataOptions)}
    taken = {k: v for k, v in vars(args).items() if k in names - {"data_options"}}
    if "weights" in taken:
        taken["weights"] = weights_arg(taken["weights"])
    if taken.get("class_weight") == "none":
        taken["class_weight"] = None
    return make_config(cls, **{**taken, **values})


def hidden_units_arg(text: str) -> tuple[int, ...]:
    """``--hidden-units``: ``'512,256'`` as ``(512, 256)``."""
    from transferkit.errors import ConfigError

    try:
        return tuple(int(u) for u in text.split(",") if u.strip())
    except ValueError:
        raise ConfigError(f"--hidden-units takes numbers like '256' or '512,256', got {text!r}") from None


def weights_arg(text: str | None) -> str | None:
    """``--weights``: ``none`` means random init."""
    return None if text is None or str(text).lower() == "none" else text


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
        "--train-fraction", type=float, default=1.0,
        help="train on this fraction of every class's training images (stratified; validation unchanged) (default 1)",
    )
    g.add_argument(
        "--augment", dest="augment_spec", default=None, metavar="SPEC",
        help="training augmentation, e.g. 'flip,rotation=0.1,zoom=0.2,crop=0.875,contrast=0.2', 'randaugment', "
        "'flip,mixup=0.2' or 'cutmix=1.0' (mix pairs of images and their labels), or 'cifar' "
        "(4-pixel zero pad, random crop, flip) (default flip,rotation,zoom; train: none; 'none' for none; "
        "never applied to validation data)",
    )
    g.add_argument(
        "--class-weight", choices=("auto", "none"), default="none",
        help="'auto' weighs classes inversely to their training counts (imbalanced data)",
    )
    g.add_argument("--cache", choices=CACHE_MODES, default="auto", help="cache of decoded images (default auto)")
    g.add_argument("--cache-dir", default=None, help="folder of the disk cache")


def data_options_from_args(args: argparse.Namespace) -> DataOptions:
    """The :class:`~transferkit.data.options.DataOptions` of parsed :func:`add_data_arguments` flags."""
    d = DataOptions()
    return DataOptions(
        augment_spec=getattr(args, "augment_spec", d.augment_spec),
        class_weight=None if getattr(args, "class_weight", "none") == "none" else args.class_weight,
        test_split=getattr(args, "test_split", d.test_split),
        train_fraction=getattr(args, "train_fraction", d.train_fraction),
        data_dir=args.data_dir,
        tfds_splits=args.tfds_splits,
        path_column=args.path_column,
        label_column=args.label_column,
        split_column=args.split_column,
        cache=getattr(args, "cache", d.cache),
        cache_dir=getattr(args, "cache_dir", d.cache_dir),
    )
