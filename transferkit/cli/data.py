"""The ``doctor`` command: what is wrong with a dataset, before training on it."""

from __future__ import annotations

import argparse
from typing import Any

from transferkit.cli.args import add_data_arguments, positive_int


def add_commands(sub: Any) -> None:
    from transferkit.runs.config import ExtractConfig

    p = sub.add_parser(
        "doctor",
        help="check a dataset: balance, broken files, duplicates, image quality, likely label errors",
        description=(
            "Decode every image of a dataset in parallel and report images per class and "
            "imbalance; zero-byte, non-image, unsupported, unreadable and truncated files; "
            "grayscale, CMYK, 16-bit, alpha, EXIF-rotated, animated and tiny images; exact "
            "duplicates within and across classes; very dark, very bright, blurry, almost "
            "one-colour and extreme-aspect images. --near-duplicates pairs resized, re-encoded and "
            "slightly cropped copies (perceptual hash) within and across classes and across the "
            "train/validation split training would make. --labels finds likely label errors by "
            "confident learning on a pretrained base's features (a linear probe's out-of-fold "
            "probabilities), and runs by itself when those features are already cached. Writes "
            "doctor.json, doctor.csv (one row per finding), doctor.md with thumbnails."
        ),
    )
    p.add_argument("--data", required=True, help="folder of class sub-folders, CSV of path,label rows, or tfds:NAME")
    p.add_argument(
        "--out", default="doctor",
        help="folder for doctor.json, doctor.csv, doctor.md and doctor_thumbnails/ (default ./doctor); "
        "a path ending in .json names the JSON file and the others go beside it",
    )
    p.add_argument("--workers", type=int, default=None, help="decoding threads (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("near-duplicates and label errors")
    g.add_argument(
        "--near-duplicates", action="store_true",
        help="pair near-identical images (resized, re-encoded, slightly cropped copies) within and across "
        "classes and across the train/validation split",
    )
    g.add_argument(
        "--labels", action=argparse.BooleanOptionalAction, default=None,
        help="look for likely label errors on the pretrained base's features (computed once and cached); "
        "--no-labels never (default: only when the features are already cached)",
    )
    g.add_argument("--base", default=ExtractConfig.base, help="pretrained base of the label check (default %(default)s)")
    g.add_argument(
        "--weights", default=ExtractConfig.weights, help="its pretrained tag or weights file (default %(default)s)"
    )
    g.add_argument("--image-size", type=positive_int, default=None, help="image side for its features (default: the weights')")
    g.add_argument("--folds", type=positive_int, default=5, help="cross-validation folds of the linear probe (default 5)")
    g.add_argument("--feature-cache-dir", default=None, help="folder of the feature cache (default: extract's)")
    g.add_argument(
        "--val-split", type=float, default=ExtractConfig.val_split,
        help="validation fraction of the split to check near-duplicates across (as training would make it; default %(default)s)",
    )
    g.add_argument("--test-split", type=float, default=0.0, help="test fraction of that split (default 0)")
    g.add_argument("--seed", type=int, default=ExtractConfig.seed, help="seed of that split (default %(default)s)")
    add_data_arguments(p, training=False)
    p.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from transferkit.runs.doctor import diagnose

    report, paths = diagnose(
        args.data,
        out=args.out,
        labels=args.labels,
        near_duplicates=args.near_duplicates,
        base=args.base,
        weights=args.weights,
        image_size=args.image_size,
        folds=args.folds,
        val_split=args.val_split,
        test_split=args.test_split,
        seed=args.seed,
        feature_cache_dir=args.feature_cache_dir,
        workers=args.workers,
        verbose=not args.quiet,
        data_dir=args.data_dir,
        path_column=args.path_column,
        label_column=args.label_column,
        split_column=args.split_column,
        tfds_splits=args.tfds_splits,
    )
    print(report.text())
    print(f"report: {paths['json']} ({paths['csv'].name}, {paths['md'].name} with thumbnails)")
    return 0
