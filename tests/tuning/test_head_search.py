"""A head search on a pretrained base (the bundled MobileNet-0.25 ImageNet weights, small images):
the base stays bit-identical, it runs over the images once per search rather than once per trial,
and each trial's sampled values are the ones its head trains with."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from transferkit import transfer, tuning
from transferkit.models import build_model
from transferkit.transfer import features

from tuning.conftest import make_images

BASE = "mobilenet_v1_025"
SIZE = 64
TRIALS = 3
OPTIONS: dict[str, Any] = dict(
    max_trials=TRIALS, epochs=2, image_size=SIZE, batch_size=8, val_split=0.25, weights="imagenet", seed=3
)

HEADS: list[dict[str, Any]] = []  # what each trial's training saw, in trial order


class RecordHead(keras.callbacks.Callback):
    """Records the trained model's head, optimizer and weights at the start and end of a trial."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.kernel = self.model.get_layer("predictions").kernel.numpy()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        HEADS.append(
            {
                "dropout": sorted({layer.rate for layer in self.model.layers if isinstance(layer, keras.layers.Dropout)}),
                "hidden": [
                    layer.units for layer in self.model.layers
                    if isinstance(layer, keras.layers.Dense) and layer.name != "predictions"
                ],
                "lr": float(self.model.optimizer.learning_rate),
                "steps": int(self.model.optimizer.iterations),
                "kernel_moved": not np.array_equal(self.kernel, self.model.get_layer("predictions").kernel.numpy()),
            }
        )


class Counted:
    """Every pass of a model over images (through ``features.feature_fn``, or a batch of
    ``predict_files``' traced step), and every fit."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from transferkit.inference import predict

        self.images = 0
        self.fit_inputs: list[int] = []  # rank of each fit's inputs: 4 for images, 2 for features
        real_feature_fn, real_fit, real_step = features.feature_fn, keras.Model.fit, predict._predict_step

        def predict_step(model: keras.Model, tta: Any, size: int) -> Any:
            step = real_step(model, tta, size)

            def counted(iterator: Any) -> Any:
                more, index, probs = step(iterator)
                self.images += int(index.shape[0])
                return more, index, probs

            return counted

        def feature_fn(model: keras.Model) -> Any:
            run = real_feature_fn(model)

            def counted(x: Any) -> Any:
                self.images += int(x.shape[0])
                return run(x)

            return counted

        def fit(model: keras.Model, x: Any = None, *args: Any, **kwargs: Any) -> Any:
            self.fit_inputs.append(len(x.element_spec[0].shape))
            return real_fit(model, x, *args, **kwargs)

        monkeypatch.setattr(features, "feature_fn", feature_fn)
        monkeypatch.setattr(predict, "_predict_step", predict_step)
        monkeypatch.setattr(keras.Model, "fit", fit)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("head_data") / "images", per_class=8, size=SIZE)


@pytest.fixture(scope="module")
def searched(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("head_search")
    HEADS.clear()
    with pytest.MonkeyPatch.context() as mp:
        counted = Counted(mp)
        result = tuning.tune(
            BASE, images, "head", out=root / "run", feature_cache_dir=root / "features",
            callbacks=[RecordHead()], verbose=0, **OPTIONS,
        )
    yield {"result": result, "counted": counted, "heads": list(HEADS), "root": root}


def _base_weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [w.numpy() for w in layer.weights] for layer in transfer.base_layers(model) if layer.weights}


def test_base_stays_bit_identical_to_the_pretrained_one(searched: dict[str, Any]) -> None:
    fresh = _base_weights(build_model(BASE, 2, "imagenet", SIZE))
    assert any("moving_mean" in w.path for layer in transfer.base_layers(searched["result"].model) for w in layer.weights)
    saved = keras.saving.load_model(searched["result"].out / "model.keras", compile=False)
    for model in (searched["result"].model, saved):
        assert model.input_shape == (None, SIZE, SIZE, 3) and model.output_shape == (None, 2)
        weights = _base_weights(model)
        assert weights.keys() == fresh.keys()
        for name, values in fresh.items():  # kernels, BN gamma/beta and moving statistics
            assert all(np.array_equal(a, b) for a, b in zip(weights[name], values)), name


def test_base_runs_once_per_search_not_once_per_trial(searched: dict[str, Any], images: Path) -> None:
    counted, result = searched["counted"], searched["result"]
    trials = json.loads((result.out / "trials.json").read_text())
    assert len(trials) == TRIALS and all(t["status"] == "COMPLETED" for t in trials)
    n_images = len(list(images.rglob("*.png")))
    # Every image once for all trials together, plus the run's report: the saved model once over
    # the validation images.
    n_val = json.loads((result.out / "metrics.json").read_text())["num_val"]
    assert counted.images == n_images + n_val
    assert len(counted.fit_inputs) == TRIALS and set(counted.fit_inputs) == {2}  # no trial saw an image
    config = json.loads((result.out / "config.json").read_text())
    assert config["augment"] is False  # the head preset on a frozen base: no augmentation by default
    assert config["features_computed"] == n_images

    # A second search over the same files reads every feature back from the disk cache.
    features._MEMORY.clear()  # as in a new process
    with pytest.MonkeyPatch.context() as mp:
        again = Counted(mp)
        tuning.tune(
            BASE, images, "head", out=searched["root"] / "again", feature_cache_dir=searched["root"] / "features",
            verbose=0, **{**OPTIONS, "max_trials": 1, "epochs": 1},
        )
    assert again.images == json.loads((searched["root"] / "again" / "metrics.json").read_text())["num_val"]  # the report only
    config = json.loads((searched["root"] / "again" / "config.json").read_text())
    assert config["features_computed"] == 0 and config["features_cached"] == n_images


def test_each_trials_values_reach_the_head_that_trains(searched: dict[str, Any]) -> None:
    result, heads = searched["result"], searched["heads"]
    trials = sorted(json.loads((result.out / "trials.json").read_text()), key=lambda t: t["trial_id"])
    assert len(heads) == len(trials) == TRIALS
    assert len({json.dumps(t["hyperparameters"], sort_keys=True) for t in trials}) == TRIALS
    train = 12  # 16 images, 4 held out
    for trial, head in zip(trials, heads):
        hp = trial["hyperparameters"]
        assert head["dropout"] == ([pytest.approx(hp["dropout"])] if hp["dropout"] else [])
        assert head["hidden"] == ([hp["hidden_units"]] if hp["hidden_units"] else [])
        assert head["lr"] == pytest.approx(hp["lr"], rel=1e-6)
        assert head["steps"] == OPTIONS["epochs"] * -(-train // OPTIONS["batch_size"])  # it stepped at that rate
        assert head["kernel_moved"]


def test_augmented_head_search_trains_on_the_frozen_base_over_images(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        counted = Counted(mp)
        result = tuning.tune(
            BASE, images, "head", out=tmp_path / "run", feature_cache_dir=tmp_path / "features", augment=True,
            verbose=1, **{**OPTIONS, "max_trials": 1, "epochs": 1},
        )
    assert "features cannot be cached" in capsys.readouterr().err
    n_val = json.loads((result.out / "metrics.json").read_text())["num_val"]
    assert counted.images == n_val and counted.fit_inputs == [4]  # the trial trained over images; the report scored val
    fresh = _base_weights(build_model(BASE, 2, "imagenet", SIZE))
    trained = _base_weights(result.model)
    for name, values in fresh.items():
        assert all(np.array_equal(a, b) for a, b in zip(trained[name], values)), name
