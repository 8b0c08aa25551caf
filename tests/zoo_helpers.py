"""Checks shared by tests/test_zoo.py and the family files in tests/models/."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf


def images(shape: tuple[int, int, int], n: int = 2) -> np.ndarray:
    """``n`` random images of ``shape``, float32 in 0-255."""
    return np.random.default_rng(0).uniform(0, 255, (n, *shape)).astype("float32")


def calibrate_batchnorm(model: keras.Model, x: np.ndarray) -> None:
    """Sets every BatchNormalization's moving statistics to those of ``x``, like a trained net.

    At random initialisation (moving mean 0, variance 1) activations grow or vanish block after
    block (a deep EfficientNet's decay to ~1e-6), which would make output comparisons vacuous.
    Dropout (stochastic depth) is off while calibrating so that inference on ``x`` sees the
    statistics it was calibrated with.
    """
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    drops = {l: l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)}
    for bn in bns:
        bn.momentum = 0.0
    for layer in drops:
        layer.rate = 0.0
    model(x, training=True)
    for bn in bns:
        bn.momentum = 0.99
    for layer, rate in drops.items():
        layer.rate = rate


def assert_same(actual, expected, atol: float = 1e-4) -> None:
    """allclose on outputs that carry signal."""
    expected = np.asarray(expected)
    assert expected.std(axis=0).mean() > 1e-2, "outputs barely depend on the input"
    np.testing.assert_allclose(np.asarray(actual), expected, atol=atol)


def assert_gradients_reach_every_weight(model: keras.Model, x: np.ndarray) -> dict[str, tf.Tensor]:
    """Every trainable weight gets a non-zero gradient (inference mode); returns them by path."""
    with tf.GradientTape() as tape:
        y = model(tf.constant(x), training=False)
        loss = tf.reduce_sum(y * tf.constant([[1.0, -2.0, 0.5]]))
    grads = tape.gradient(loss, model.trainable_weights)
    for w, grad in zip(model.trainable_weights, grads):
        assert grad is not None, w.path
        assert float(tf.reduce_max(tf.abs(grad))) > 0, w.path
    return {w.path: grad for w, grad in zip(model.trainable_weights, grads)}


def layer_lines(model: keras.Model) -> list[str]:
    """``"name Type shape shape..."`` per layer in ``model.layers`` order, e.g.
    ``"stage1_block1_conv1 Conv2D (3,3,16,16)"``: what freezing by stage, weight loading (by name
    and by order) and the tuner rely on, in the form ``tests/pinned/layers/`` pins it."""
    return [
        " ".join([layer.name, type(layer).__name__])
        + "".join(" " + str(tuple(w.shape)).replace(" ", "") for w in layer.weights)
        for layer in model.layers
    ]


def pinned_layer_cases(family: str) -> list:
    """The builds ``tests/pinned/layers/<family>.json`` pins, as pytest params."""
    path = Path(__file__).parent / "pinned" / "layers" / f"{family}.json"
    cases = json.loads(path.read_text())
    return [
        pytest.param(
            case,
            id="-".join([case["name"], *(f"{k}={v}" for k, v in case["options"].items())]),
        )
        for case in cases
    ]
