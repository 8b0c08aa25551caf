"""GoogLeNet's auxiliary classifiers in ``train``: the training loss is main + 0.3 x (aux1 + aux2),
computed here from the three outputs; the saved model and its SavedModel have one output; the
history shows the main and auxiliary losses."""

from __future__ import annotations

import csv
from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.data import DataOptions
from transferkit.runs.train import TrainConfig, build_training_model, compile_for_training, resolve_schedule, train
from transferkit.transfer import schedules


def _config(out: Path) -> TrainConfig:
    return TrainConfig(
        base="googlenet", data="digits", image_size=65, epochs=1, batch_size=32, val_split=0.05, out=str(out),
        run_eagerly=True, data_options=DataOptions(train_fraction=0.03),
    )


def test_training_loss_is_main_plus_0_3_of_each_auxiliary_loss(tmp_path: Path) -> None:
    config = _config(tmp_path / "unused")
    keras.utils.set_random_seed(0)
    model = build_training_model(config, 10, 65, aux=True)
    assert model.output_names == ["predictions", "aux1_predictions", "aux2_predictions"]
    compile_for_training(model, schedules.make_training(resolve_schedule(config), 1), run_eagerly=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (6, 65, 65, 3)).astype("float32")
    y = np.array([0, 1, 2, 3, 4, 5])
    logs = model.evaluate(x, (y, y, y), verbose=0, return_dict=True)
    outputs = model.predict(x, verbose=0)  # inference mode, as evaluate: no dropout
    ce = [float(np.mean(-np.log(p[np.arange(len(y)), y]))) for p in outputs]
    assert logs["loss"] == pytest.approx(ce[0] + 0.3 * (ce[1] + ce[2]), rel=1e-4)
    assert abs(logs["loss"] - ce[0]) > 0.1  # the auxiliary terms count


def test_googlenet_trains_with_aux_and_saves_one_output(tmp_path: Path) -> None:
    import tensorflow as tf

    out = tmp_path / "run"
    result = train(_config(out), verbose=0)
    assert not isinstance(result.model.output, (list, tuple))
    saved = keras.saving.load_model(out / "model.keras", compile=False)
    assert not isinstance(saved.output, (list, tuple)) and saved.output_shape == (None, 10)
    assert not any(layer.name.startswith("aux") for layer in saved.layers)
    serving = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    outputs = serving.structured_outputs  # the main classifier's named outputs only
    assert set(outputs) == {"probabilities", "top_k_indices", "top_k_scores", "top_k_labels"}
    assert outputs["probabilities"].shape.as_list() == [None, 10]
    with open(out / "history.csv", newline="") as f:
        row = next(csv.DictReader(f))
    for column in ("loss", "main_loss", "aux1_loss", "aux2_loss", "accuracy", "val_accuracy"):
        assert np.isfinite(float(row[column])), column
    # Each epoch's mean loss is the weighted sum of the means of its parts.
    expected = float(row["main_loss"]) + 0.3 * (float(row["aux1_loss"]) + float(row["aux2_loss"]))
    assert float(row["loss"]) == pytest.approx(expected, rel=1e-3)
