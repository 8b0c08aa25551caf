"""The ``models`` command: the registry's models."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    m = sub.add_parser("models", help="list registered models", description="List every registered model name with its parameter count, default input size and pretrained weights.")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*'")
    m.add_argument("--no-params", action="store_true", help="skip building models to count parameters (fast)")
    m.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    from transferkit.models import create_model, get_model_info, list_models
    from transferkit.models.weights import pretrained_tags

    names = list_models(args.pattern)
    print(f"{'name':<24} {'params':>13} {'input':>11}  pretrained")
    for name in names:
        info = get_model_info(name)
        params = "-" if args.no_params else f"{create_model(name).count_params():,}"
        h, w, c = info.input_shape
        print(f"{name:<24} {params:>13} {f'{h}x{w}x{c}':>11}  {','.join(pretrained_tags(name)) or '-'}")
    return 0
