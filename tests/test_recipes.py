"""Every recipe runs, on tiny settings, and produces what it promises."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_depth_study_trains_plain_and_residual_nets(tmp_path: Path) -> None:
    import tensorflow_datasets as tfds

    recipe = _load("depth_study")
    with tfds.testing.mock_data(num_examples=64):
        results = recipe.run("tfds:cifar10", depths=[8], epochs=1, batch_size=16, out=str(tmp_path))
    assert set(results) == {"resnet-8", "plain-8"}
    assert results["resnet-8"]["params"] == results["plain-8"]["params"]  # option A adds none
    saved = json.loads((tmp_path / "depth_study.json").read_text())
    assert saved == results
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in results.values())


def test_notebook_quickstart_runs_on_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = (RECIPES / "notebook_quickstart.py").read_text()
    source = source.replace("epochs=5, fine_tune_epochs=2", "epochs=1, fine_tune_epochs=1")
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(source, "notebook_quickstart.py", "exec"), namespace)
    result = namespace["result"]
    assert (tmp_path / "runs" / "quickstart" / "saved_model").is_dir()
    assert result.class_names == ("ants", "bees")  # type: ignore[attr-defined]
    assert namespace["probabilities"].shape[1] == 2  # type: ignore[union-attr]
