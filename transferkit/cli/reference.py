"""The command-line reference (``docs/cli.md``), generated from the parser itself:
``python -m transferkit.cli.reference > docs/cli.md``. A test keeps the file in sync."""

from __future__ import annotations

import argparse
import os
import sys

WIDTH = 100


def markdown() -> str:
    """Every command's ``--help``, at a fixed width, as one Markdown page."""
    from transferkit.cli.main import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)  # argparse wraps at the terminal's width
    try:
        parser = build_parser()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        parts = [
            "# Command-line reference\n\n"
            "Generated from the parser by `python -m transferkit.cli.reference > docs/cli.md` "
            "(a test keeps this page in sync). Every command prints the same with `--help`.\n",
            "## transferkit\n\n```text\n" + parser.format_help() + "```\n",
        ]
        parts += [f"## transferkit {name}\n\n```text\n{command.format_help()}```\n" for name, command in commands.items()]
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(markdown())
