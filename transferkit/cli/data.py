"""The ``doctor`` command: what is wrong with a dataset, before training on it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from transferkit.cli.args import add_data_arguments


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check a dataset: class balance, unreadable and unsupported files, duplicates",
        description=(
            "Decode every image of a dataset in parallel and report images per class and "
            "imbalance; zero-byte, non-image, unsupported, unreadable and truncated files; "
            "grayscale, CMYK, 16-bit, alpha, EXIF-rotated, animated and very small images; exact "
            "duplicates within and across classes. Writes doctor.json."
        ),
    )
    p.add_argument("--data", required=True, help="folder of class sub-folders, CSV of path,label rows, or tfds:NAME")
    p.add_argument("--out", default="doctor.json", help="where to write the JSON report (default ./doctor.json)")
    p.add_argument("--workers", type=int, default=None, help="decoding threads (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_arguments(p, training=False)
    p.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from transferkit.data.doctor import doctor

    report = doctor(
        args.data,
        data_dir=args.data_dir,
        path_column=args.path_column,
        label_column=args.label_column,
        split_column=args.split_column,
        tfds_splits=args.tfds_splits,
        workers=args.workers,
        verbose=not args.quiet,
    )
    print(report.text())
    out = Path(args.out)
    out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    print(f"report: {out}")
    return 0
