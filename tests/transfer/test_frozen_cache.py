"""The frozen-prefix cache: training the suffix on cached prefix outputs is training the model."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import transferkit as tk
from transferkit import transfer
from transferkit.transfer import features
from transferkit.runs.finetune import FinetuneConfig, finetune


def _model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return tk.create_model("resnet20", num_classes=3, dropout=0.0)


@pytest.mark.parametrize("train_bn", [False, True])
def test_training_on_the_cache_is_training_the_model(train_bn: bool) -> None:
    x = np.random.default_rng(0).uniform(0, 255, (12, 32, 32, 3)).astype("float32")
    y = np.arange(12) % 3
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(12)  # one batch: order cannot matter
    plain, cached = _model(), _model()
    cached.set_weights(plain.get_weights())
    for model in (plain, cached):
        transfer.freeze(model, "stage3", train_bn=train_bn)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    frozen_before = {w.path: np.array(w.numpy(), copy=True) for w in cached.non_trainable_weights}

    plain.fit(data, epochs=3, verbose=0, shuffle=False)
    prefix, suffix = transfer.frozen_prefix(cached)
    suffix.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    train, val = features.cached_prefix_data(prefix, data, data, batch_size=12)
    history = suffix.fit(train, validation_data=val, epochs=3, verbose=0)

    assert len(history.history["val_loss"]) == 3
    for a, b in zip(plain.weights, cached.weights, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)
    # The trained part moved, the frozen part is bit-identical.
    start = {w.path: w for w in _model().weights}
    changed = {w.path for w in cached.weights if not np.array_equal(w.numpy(), start[w.path].numpy())}
    assert changed and all(p.startswith(("stage3", "predictions")) for p in changed if "moving" not in p)
    for w in cached.non_trainable_weights:
        if w.path in frozen_before and not w.path.startswith("stage3"):
            np.testing.assert_array_equal(w.numpy(), frozen_before[w.path])


def test_prefix_fingerprint_is_the_weights_not_the_layer_names() -> None:
    """Two builds of one base (Keras names the second one's layers ..._1) with the same weights
    share a fingerprint, so --lr auto's range test and phase 1 share the frozen layers' outputs;
    any changed weight gives another."""
    from transferkit.models import create_backbone

    first = create_backbone("mobilenet_v1_025", weights=None, input_shape=(32, 32, 3))
    second = create_backbone("mobilenet_v1_025", weights=None, input_shape=(32, 32, 3))
    second.set_weights(first.get_weights())
    assert features.prefix_fingerprint(first) == features.prefix_fingerprint(second)
    weights = second.get_weights()
    weights[3] = weights[3] + 1e-3
    second.set_weights(weights)
    assert features.prefix_fingerprint(first) != features.prefix_fingerprint(second)


def test_prefix_bytes_counts_every_cut_tensor() -> None:
    model = _model()
    transfer.freeze(model, "stage3")
    prefix, _ = transfer.frozen_prefix(model)
    per_image = sum(int(np.prod(t.shape[1:])) for t in (prefix.outputs)) * 4
    assert features.prefix_bytes(prefix, 10) == 10 * per_image > 0


def _run(tmp_path: Path, capsys: pytest.CaptureFixture, **kwargs) -> tuple[tk.runs.RunResult, str]:
    settings = dict(data="sample", out=str(tmp_path / "run"), image_size=96, epochs=2, fine_tune_epochs=2)
    config = FinetuneConfig(**{**settings, **kwargs})
    result = finetune(config, verbose=1)
    return result, capsys.readouterr().err


def test_finetune_without_augmentation_caches_the_frozen_layers(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    reference = tk.create_model("mobilenet_v1_025", num_classes=2, input_shape=(96, 96, 3), weights="imagenet")
    result, log = _run(tmp_path, capsys, augment=False)
    assert log.count("frozen layers computed once per image") == 2  # phase 1 and phase 2
    rows = json.loads((result.out / "metrics.json").read_text())["epochs"]
    assert [r["phase"] for r in rows] == ["head", "head", "fine_tune", "fine_tune"]
    assert all("val_accuracy" in r for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]  # it learns (accuracy on 12 photos after 4 epochs is noise)
    assert result.val_accuracy == pytest.approx(rows[-1]["val_accuracy"])
    # Phase 2 trained stage5 through the cache; everything before it is the ImageNet file's.
    for layer in result.model.layers:
        if layer.weights and not layer.name.startswith(("stage5", "head", "predictions")):
            for a, b in zip(layer.weights, reference.get_layer(layer.name).weights):
                np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    moved = result.model.get_layer("stage5_block2_pw").kernel.numpy() - reference.get_layer("stage5_block2_pw").kernel.numpy()
    assert np.abs(moved).max() > 0


def test_augmented_or_opted_out_runs_compute_every_layer(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, log = _run(tmp_path / "aug", capsys, augment=True, fine_tune_epochs=0)
    assert "frozen layers computed once" not in log
    _, log = _run(tmp_path / "off", capsys, augment=False, frozen_cache=False, fine_tune_epochs=0)
    assert "frozen layers computed once" not in log
