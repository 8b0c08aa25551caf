"""The ``transferkit`` command line.

One module per command group in this package defines ``add_commands(subparsers)``, registering
subparsers whose ``func(args) -> int`` runs the command; the work itself is library code. A user
mistake (any :class:`~transferkit.errors.TransferkitError`) prints one line and exits 2; an
internal error prints one line naming a log file that holds the traceback, and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "transferkit.cli.train",
    "transferkit.cli.inference",
    "transferkit.cli.data",
    "transferkit.cli.tune",
    "transferkit.cli.models",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transferkit",
        description="Transfer learning on images with Keras 3: fine-tune, extract, evaluate, export.",
    )
    from transferkit._version import __version__

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
        print(
            f"transferkit {args.command}: interrupted; no run folder was written (rerun the same command to "
            "resume an interrupted training run)",
            file=sys.stderr,
        )
        return 130
    except Exception as err:  # noqa: BLE001 - every other error is ours: one line and a log
        log = _write_log(args.command)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(
            f"transferkit {args.command}: internal error ({type(err).__name__}{': ' + reason if reason else ''}); "
            f"the traceback is in {log}; please report it",
            file=sys.stderr,
        )
        return 1


def _write_log(command: str) -> str:
    """Writes the current exception's traceback to a new log file; returns its path."""
    import tempfile
    import time
    import traceback

    folder = os.environ.get("TRANSFERKIT_LOG_DIR") or os.path.join(tempfile.gettempdir(), "transferkit-logs")
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(f"transferkit {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
    return path


if __name__ == "__main__":
    sys.exit(main())
