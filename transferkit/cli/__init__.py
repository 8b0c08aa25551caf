"""The ``transferkit`` command line (:func:`main`)."""

from transferkit.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
