"""The ``transferkit`` command line.

Each command lives beside the code it drives: a module in ``COMMAND_MODULES`` defines
``add_commands(subparsers)``, registering subparsers whose ``func(args) -> int`` runs the command.
A user mistake (any :class:`~transferkit.errors.TransferkitError`) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "transferkit.commands",
    "transferkit.data.commands",
    "transferkit.transfer_commands",
    "transferkit.tuning_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transferkit",
        description="Transfer learning on images with Keras 3: fine-tune, extract, evaluate, export.",
    )
    from transferkit import __version__

    parser.add_argument("--version", action="version", version=f"transferkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``transferkit`` console script; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from transferkit.errors import TransferkitError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TransferkitError as err:
        print(f"transferkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"transferkit {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
