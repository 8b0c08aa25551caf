"""``transferkit run``: run a recipe (an experiment as data, ``recipes/*.toml``)."""

from __future__ import annotations

import argparse
from typing import Any

from transferkit.cli.console import progress_verbosity


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a recipe: the variants of an experiment, one after another (recipes/*.toml)",
        description=(
            "Runs every variant of a TOML recipe through train/finetune/extract, skipping variants a "
            "previous run of the same --out finished, and writes results.csv, results.md and "
            "val_curves.png. See docs/recipes.md."
        ),
    )
    p.add_argument("recipe", metavar="RECIPE", help="a recipe file, or the name of one in ./recipes (e.g. vgg_depth)")
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
        help="override a key the recipe sets, in its settings and variants (repeatable; default none)",
    )
    p.add_argument("--smoke", action="store_true", help="apply the recipe's [smoke] table: tiny data, few steps (default off)")
    p.add_argument("--out", default=None, help="results folder (default runs/recipes/<recipe>[-smoke])")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_recipe_command)


def run_recipe_command(args: argparse.Namespace) -> int:
    from transferkit.runs.recipe import run_recipe

    rows = run_recipe(args.recipe, args.out, args.sets, args.smoke, verbose=progress_verbosity(args.quiet))
    for row in rows:
        print(f"{row['variant']}: validation accuracy {row['val_accuracy']:.4f}")
    return 0
