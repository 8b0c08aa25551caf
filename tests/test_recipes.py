"""Every recipe runs, on tiny settings, and produces what it promises."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _accuracy(model: Any, batches: Any) -> float:
    """Accuracy of ``model`` over ``(images, labels)`` batches, counted here."""
    right = total = 0
    for images, labels in batches:
        predicted = np.argmax(model.predict(images, verbose=0), axis=1)
        right += int((predicted == labels.numpy()).sum())
        total += len(predicted)
    return right / total


def test_depth_study_trains_plain_and_residual_nets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras
    import tensorflow_datasets as tfds

    import transferkit

    # The recipe's models and data, recorded as it makes them, to check what it reports.
    built: dict[bool, tuple[Any, list[np.ndarray]]] = {}
    loaded: list[Any] = []
    create_model, load_data = transferkit.create_model, transferkit.load_data

    def recording_create_model(*args: Any, **kwargs: Any) -> Any:
        model = create_model(*args, **kwargs)
        built[kwargs["plain"]] = (model, [w.numpy().copy() for w in model.trainable_weights])
        return model

    def recording_load_data(*args: Any, **kwargs: Any) -> Any:
        loaded.append(load_data(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(transferkit, "create_model", recording_create_model)
    monkeypatch.setattr(transferkit, "load_data", recording_load_data)
    recipe = _load("depth_study")
    with tfds.testing.mock_data(num_examples=64):
        results = recipe.run("tfds:cifar10", depths=[8], epochs=1, batch_size=16, out=str(tmp_path))
        assert set(results) == {"resnet-8", "plain-8"} and set(built) == {False, True} and len(loaded) == 1
        assert json.loads((tmp_path / "depth_study.json").read_text()) == results
        for plain, (model, initial) in built.items():
            name = f"{'plain' if plain else 'resnet'}-8"
            adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
            # resnet8: 3 stages of 1 basic block, one shortcut sum each; the plain net has none.
            assert len(adds) == (0 if plain else 3), name
            assert all(not np.array_equal(w.numpy(), w0) for w, w0 in zip(model.trainable_weights, initial)), name
            assert results[name]["params"] == model.count_params()
            assert results[name]["val_accuracy"] == pytest.approx(_accuracy(model, loaded[0].val), abs=1e-6), name
    assert results["resnet-8"]["params"] == results["plain-8"]["params"]  # option A adds none


def test_notebook_quickstart_runs_on_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    monkeypatch.chdir(tmp_path)
    source = (RECIPES / "notebook_quickstart.py").read_text()
    source = source.replace("epochs=5, fine_tune_epochs=2", "epochs=1, fine_tune_epochs=1")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "notebook_quickstart.py", "exec"), namespace)
    result, bundle = namespace["result"], namespace["bundle"]
    run = tmp_path / "runs" / "quickstart"
    assert (run / "saved_model").is_dir()
    assert result.class_names == ("ants", "bees")
    # The run folder holds the model the notebook predicted with.
    saved = keras.saving.load_model(run / "model.keras")
    np.testing.assert_allclose(saved.predict(namespace["images"], verbose=0), namespace["probabilities"], atol=1e-5)
    # The notebook's validation batches are the run's held-out split, and the accuracy it
    # printed is the model's accuracy on them.
    with open(run / "split.csv") as f:
        held_out = sorted(r["path"] for r in csv.DictReader(f) if r["split"] == "val")
    assert sorted(f for f, s in zip(bundle.files, bundle.splits) if s == "val") == held_out
    assert result.val_accuracy == pytest.approx(_accuracy(result.model, bundle.val), abs=1e-6)
