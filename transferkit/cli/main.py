"""The ``transferkit`` command line.

One module per command group in this package defines ``add_commands(subparsers)``, registering
subparsers whose ``func(args) -> int`` runs the command; the work itself is library code. A user
mistake (any :class:`~transferkit.errors.TransferkitError`, or a usage error) prints one line and
exits 2; an internal error prints one line naming a log file that holds the traceback, and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

COMMAND_MODULES = (
    "transferkit.cli.train",
    "transferkit.cli.inference",
    "transferkit.cli.data",
    "transferkit.cli.tune",
    "transferkit.cli.models",
    "transferkit.cli.recipes",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # a usage error (one line, 2), or --help / --version (0)
        return done.code if isinstance(done.code, int) else 2
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
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        what = f"internal error ({type(err).__name__}{': ' + reason if reason else ''})"
        try:
            where = f"the traceback is in {_write_log(args.command, argv)}"
        except OSError as log_err:
            where = f"no log could be written ({log_err})"
        print(f"transferkit {args.command}: {what}; {where}; please report it", file=sys.stderr)
        return 1


def _write_log(command: str, argv: Sequence[str]) -> str:
    """Writes the command and the current exception's traceback to a new log file in
    ``$TRANSFERKIT_LOG_DIR`` (default: the temporary folder's ``transferkit-logs``); returns its path."""
    import shlex
    import tempfile
    import time
    import traceback

    folder = os.environ.get("TRANSFERKIT_LOG_DIR") or os.path.join(tempfile.gettempdir(), "transferkit-logs")
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(f"transferkit {shlex.join(argv)}\n\n{traceback.format_exc()}")
    return path


if __name__ == "__main__":
    sys.exit(main())
