"""Regularisation from Keras' own pieces: label smoothing, weight averaging (EMA) and stochastic
depth (drop path), in finetune runs and in the model builders."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import transferkit as tk
from transferkit.errors import ConfigError
from transferkit.models import build_model, drop_path_option
from transferkit.models.registry import parameter_counts
from transferkit.models.resnet import residual_block
from transferkit.runs.finetune import FinetuneConfig, finetune
from transferkit.transfer.schedules import classification_loss
from random_init import random_init
from tuning.conftest import make_images

MOMENTUM = 0.9


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("regularization") / "images", per_class=8)


def _by_hand(label_smoothing: float, p_true: float = 0.9) -> float:
    """Cross-entropy of the prediction (p_true, 1 - p_true) of class 0 out of two, targets smoothed."""
    target = (1 - label_smoothing) + label_smoothing / 2
    return -(target * np.log(p_true) + (1 - target) * np.log(1 - p_true))


def test_label_smoothing_changes_the_loss_of_a_right_prediction() -> None:
    pred = np.array([[0.9, 0.1]], np.float32)
    for eps in (0.0, 0.2):
        sparse = float(classification_loss(eps)(np.array([0]), pred))
        soft = float(classification_loss(eps, soft_labels=True)(np.array([[1.0, 0.0]], np.float32), pred))
        assert sparse == pytest.approx(_by_hand(eps), rel=1e-5)
        assert soft == pytest.approx(_by_hand(eps), rel=1e-5)
    assert _by_hand(0.2) > _by_hand(0.0) + 0.2  # 0.325 against 0.105
    with pytest.raises(ConfigError, match=r"label_smoothing must be in \[0, 1\)"):
        classification_loss(1.0)


class Averager(keras.callbacks.Callback):
    """The weights after every training step, averaged as the EMA defines it (the first step's
    weights, then ``m * average + (1 - m) * weights``), computed here apart from the optimizer."""

    def __init__(self, crash_at: int | None = None) -> None:
        super().__init__()
        self.average: list[np.ndarray] | None = None
        self.last: list[np.ndarray] = []
        self.crash_at = crash_at

    def on_train_batch_end(self, batch: int, logs=None) -> None:  # noqa: ANN001
        self.last = [np.array(v.numpy(), copy=True) for v in self.model.trainable_variables]
        if self.average is None:
            self.average = self.last
        else:
            self.average = [MOMENTUM * a + (1 - MOMENTUM) * w for a, w in zip(self.average, self.last)]

    def on_epoch_end(self, epoch: int, logs=None) -> None:  # noqa: ANN001
        if epoch == self.crash_at:
            self.crash_at = None
            raise RuntimeError("simulated crash")


def test_ema_weights_are_saved_through_the_frozen_cache_and_a_resume(images: Path, tmp_path: Path) -> None:
    config = FinetuneConfig(
        base="resnet20", weights=random_init(tmp_path / "init.weights.h5"), data=str(images), out=str(tmp_path / "run"),
        image_size=32, batch_size=4, epochs=3, fine_tune_epochs=0, lr=0.05, augment=False, val_split=0.25,
        ema=MOMENTUM, label_smoothing=0.2,
    )
    averager = Averager(crash_at=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(config, verbose=0, callbacks=[averager])
    result = finetune(config, verbose=0, callbacks=[averager])  # resumes at epoch 2
    # The frozen cache trained the head alone: the averaged variables are the head's.
    assert [v.shape for v in averager.model.trainable_variables] == [(64, 2), (2,)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert not [str(w.message) for w in caught if "optimizer" in str(w.message)]  # the saved optimizer loads as it was
    head = saved.get_layer("predictions").get_weights()
    for mine, theirs, last in zip(averager.average, head, averager.last):
        np.testing.assert_allclose(theirs, mine, rtol=1e-5, atol=1e-6)
        assert np.abs(theirs - last).max() > 1e-3  # not the last step's weights
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "run" / "saved_model"))
    kernels = [v.numpy() for v in served.variables if tuple(v.shape) == (64, 2)]
    assert len(kernels) == 1
    np.testing.assert_allclose(kernels[0], averager.average[0], rtol=1e-5, atol=1e-6)
    # The report scores the averaged weights: its accuracy is the saved model's.
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert report["accuracy"] == pytest.approx(result.val_accuracy)
    # The run's loss is the smoothed one: 0.325 for a right prediction of 0.9, not 0.105.
    assert float(result.model.loss(np.array([0]), np.array([[0.9, 0.1]], np.float32))) == pytest.approx(_by_hand(0.2), rel=1e-5)


def _block_model(rate: float) -> keras.Model:
    inputs = keras.Input((8, 8, 4))
    outputs = residual_block(inputs, 4, 1, "b", block_order="full_preact", drop_path=rate)
    return keras.Model(inputs, outputs)


def test_drop_path_drops_whole_branches_per_example_in_training_only() -> None:
    keras.utils.set_random_seed(1)
    model = _block_model(0.5)
    drop = model.get_layer("b_drop_path")
    branch = keras.Model(model.input, drop.input)
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 4)).astype(np.float32)
    out = np.asarray(model(x, training=True))
    f = np.asarray(branch(x, training=True))  # BatchNormalization: the same batch statistics
    dropped = [i for i in range(64) if np.allclose(out[i], x[i], atol=1e-6)]
    kept = [i for i in range(64) if i not in dropped]
    assert 10 < len(dropped) < 54  # about half, each example on its own
    np.testing.assert_allclose(out[kept], x[kept] + f[kept] / 0.5, rtol=1e-4, atol=1e-4)  # scaled by 1/(1-p)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), x + np.asarray(branch(x, training=False)), rtol=1e-5, atol=1e-5)
    assert not drop.weights


@pytest.mark.parametrize("name", ["resnet20", "wrn_40_1"])
def test_drop_path_adds_no_parameters_and_pretrained_weights_still_load(name: str, tmp_path: Path) -> None:
    plain = tk.create_model(name, num_classes=10)
    dropping = tk.create_model(name, num_classes=10, **drop_path_option(name, 0.2))
    assert dropping.count_params() == plain.count_params() == parameter_counts()[name]
    rates = [l.rate for l in dropping.layers if l.name.endswith("_drop_path")]
    blocks = len([l for l in plain.layers if l.name.endswith("_add")])
    # Linear decay: block i of n drops at 0.2 * i / n (the first block has none).
    np.testing.assert_allclose(rates, [0.2 * i / blocks for i in range(1, blocks)], rtol=1e-6)
    weights = random_init(tmp_path / "init.weights.h5", name, 10, 32)
    reference = build_model(name, 10, weights, 32)
    legacy = tmp_path / "published.h5"  # a keras.applications-style file: weighted layers paired in order
    reference.save(legacy)
    for source in (weights, str(legacy)):
        loaded = build_model(name, 10, source, 32, **drop_path_option(name, 0.2))
        for layer in reference.layers:
            for a, b in zip(layer.get_weights(), loaded.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)


def test_a_published_tag_accepts_drop_path_but_no_other_change(empty_keras_home: Path) -> None:
    from transferkit.errors import WeightsError

    # Built, then refused only for the missing file: drop path does not change what the weights fit.
    with pytest.raises(WeightsError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        tk.create_backbone("resnet50", weights="imagenet", drop_path=0.1)
    with pytest.raises(ConfigError, match=r"the overrides \['block_order'\] change the architecture"):
        tk.create_backbone("resnet50", weights="imagenet", block_order="full_preact")


def test_drop_path_needs_residual_blocks() -> None:
    assert drop_path_option("efficientnet_b0", 0.3) == {"drop_connect_rate": 0.3}
    assert drop_path_option("mobilenet_v1_025", 0.0) == {}
    with pytest.raises(ConfigError, match="mobilenet_v1_025 has no residual blocks for drop_path"):
        drop_path_option("mobilenet_v1_025", 0.1)
    with pytest.raises(ConfigError, match=r"drop_path must be in \[0, 1\)"):
        drop_path_option("resnet20", 1.5)


def test_train_with_mixup_drop_path_and_ema_from_the_command_line(images: Path, tmp_path: Path) -> None:
    from transferkit.cli import main

    out = tmp_path / "run"
    argv = [
        "train", "--base", "resnet20", "--data", str(images), "--out", str(out), "--schedule", "constant",
        "--epochs", "2", "--batch-size", "4", "--augment", "flip,mixup=0.4", "--drop-path", "0.2",
        "--ema", "--label-smoothing", "0.1", "--quiet",
    ]
    assert main(argv) == 0
    model = keras.saving.load_model(out / "model.keras")
    assert len([l for l in model.layers if l.name.endswith("_drop_path")]) == 8  # 9 blocks, the first drops none
    # One-hot labels in every split: the run's validation score is the saved model's on its val files.
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((out / "report" / "report.json").read_text())
    assert metrics["val_accuracy"] == pytest.approx(report["accuracy"])
    assert np.isfinite(metrics["val_loss"])


def test_extract_trains_its_head_on_mixed_batches(images: Path, tmp_path: Path) -> None:
    from transferkit.cli import main

    out = tmp_path / "extract"
    argv = [
        "extract", "--base", "resnet20", "--weights", "none", "--data", str(images), "--out", str(out),
        "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--augment", "mixup=0.4", "--quiet",
    ]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((out / "report" / "report.json").read_text())
    assert metrics["val_accuracy"] == pytest.approx(report["accuracy"])
