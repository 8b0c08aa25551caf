"""The ``export`` command: a run's model as a SavedModel, .keras, TFLite, ONNX or OpenVINO file,
checked for parity with the Keras model in its own runtime."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_commands(sub: Any) -> None:
    from transferkit.runs.config import EXPORT_FORMATS as FORMATS, EXPORT_QUANTIZE as QUANTIZE

    p = sub.add_parser(
        "export",
        help="export a run's model (saved_model, keras, tflite, onnx, openvino) and check its parity",
        description=(
            "Write a run's model in another format into --out (default RUN/export/<format>), load it "
            "in its own runtime and compare it with the Keras model on up to 32 of the run's "
            "validation images: export.json records the largest probability difference, top-1 "
            "agreement, file size and images/s. Fails (exit 1, nothing written) when top-1 agreement "
            "is below --min-agreement (default 0.99; int8 only reports it). onnx and openvino need "
            "pip install \"transferkit[export]\"."
        ),
    )
    p.add_argument("model", metavar="RUN", help="a run folder or a .keras file")
    p.add_argument("--format", default="saved_model", help=f"one of {', '.join(FORMATS)} (default saved_model)")
    p.add_argument(
        "--quantize", default="none",
        help=f"tflite only: one of {', '.join(QUANTIZE)}; int8 calibrates on the run's training images",
    )
    p.add_argument("--out", default=None, help="export folder to create (default RUN/export/<format>[-<quantize>])")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--min-agreement", type=float, default=None, help="top-1 agreement needed (default 0.99; none for int8)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from transferkit.runs.export import ParityError, export

    try:
        report = export(args.model, args.format, args.quantize, args.out, args.overwrite, args.min_agreement)
    except ParityError as err:
        print(f"transferkit export: parity failed: {err}", file=sys.stderr)
        return 1
    print(
        f"{report.path}: {report.file_bytes / 1e6:.2f} MB; on {report.num_images} images ({report.images_from}): "
        f"top-1 agreement {report.top1_agreement:.1%}, largest probability difference {report.max_abs_diff:.2e}, "
        f"{report.images_per_second:.0f} images/s (Keras {report.keras_images_per_second:.0f})"
    )
    return 0
