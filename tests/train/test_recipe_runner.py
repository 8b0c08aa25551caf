"""Recipes as data: every recipe in recipes/ runs with --smoke and writes one finite results row
per variant; a rerun skips finished variants; bad recipes are one line, exit 2, nothing run."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from transferkit.cli import main

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.toml"))


def test_the_six_studies_are_there() -> None:
    assert {p.stem for p in RECIPES} >= {
        "vgg_depth", "resnet_degradation", "preact_orders", "wrn_width_depth", "googlenet_aux", "transfer_modes",
    }


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_runs_with_smoke(recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny data, one epoch. Each variant's SavedModel export and report plots (tested by the
    train and report tests) cost more than these runs and are left out here; report.json is
    still written."""
    import tomllib

    from transferkit.inference import report
    from transferkit.runs import folder

    monkeypatch.setattr(folder, "export_saved_model", lambda model, path, *names: Path(path).mkdir())
    for plot in ("_plot_confusion", "_plot_per_class", "_plot_reliability", "_plot_history", "_plot_mistakes"):
        monkeypatch.setattr(report, plot, lambda path, *args: None)
    out = tmp_path / "out"
    assert main(["run", str(recipe), "--smoke", "--out", str(out), "--quiet"]) == 0
    variants = tomllib.loads(recipe.read_text())["variants"]
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == [v["name"] for v in variants]
    for row in rows:
        for column in ("params", "val_accuracy", "best_val_accuracy", "train_accuracy", "seconds"):
            assert math.isfinite(float(row[column])), (row["variant"], column)
        assert 0.0 <= float(row["val_accuracy"]) <= 1.0 and int(row["params"]) > 0
    table = (out / "results.md").read_text()
    assert all(f"| {v['name']} |" in table for v in variants)
    assert (out / "val_curves.png").stat().st_size > 1000
    assert all((out / "variants" / v["name"] / "report" / "report.json").is_file() for v in variants)
    if recipe.stem == "resnet_degradation":  # a rerun skips every finished variant
        monkeypatch.setattr("transferkit.runs.recipe.train", lambda *a, **k: pytest.fail("reran a finished variant"))
        assert main(["run", str(recipe), "--smoke", "--out", str(out), "--quiet"]) == 0


GOOD = """title = "t"
[settings]
data = "digits"
epochs = 1
[[variants]]
name = "a"
base = "resnet20"
"""

BAD = {
    "unknown key": (GOOD.replace("epochs = 1", "epochs = 1\nepochz = 2"), [], "line 5: unknown key 'epochz'"),
    "wrong type": (GOOD.replace("epochs = 1", 'epochs = "ten"'), [], "line 4: epochs must be int"),
    "unknown base": (GOOD.replace('"resnet20"', '"resnet21"'), [], "variant 'a'"),
    "unknown schedule": (GOOD.replace("epochs = 1", 'epochs = 1\nschedule = "sgdr"'), [], "unknown schedule 'sgdr'"),
    "set on a missing key": (GOOD, ["--set", "lr=0.1"], "sets no key 'lr'"),
    "not TOML": ("title = \n[[variants", [], "is not valid TOML"),
    "unknown top key": (GOOD + "\n[extra]\nx = 1\n", [], "unknown key 'extra'; valid keys: title"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_recipe_is_one_line_exit_2_nothing_run(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, extra, words = BAD[case]
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["run", str(recipe), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("transferkit run: error:") and words in err, err
    assert not out.exists()
