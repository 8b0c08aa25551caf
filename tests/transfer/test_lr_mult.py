"""Per-stage learning-rate multipliers: exact scaling, model.fit, .keras round trip, tf.distribute."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from transferkit.transfer import optimizers
from transferkit import transfer
from transferkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_parse_and_match() -> None:
    assert transfer.parse_lr_mult("0.1") == {"base": 0.1}
    assert transfer.parse_lr_mult(0.5) == {"base": 0.5}
    rules = transfer.parse_lr_mult("stage4=0.1,stage5=0.3,base=0.01")
    assert rules == {"stage4": 0.1, "stage5": 0.3, "base": 0.01}
    assert transfer.lr_multiplier("mobilenet/stage4_block2_pw/kernel", rules) == 0.1
    assert transfer.lr_multiplier("stage5_block1_dw_bn/gamma", rules) == 0.3
    assert transfer.lr_multiplier("stage3_block1_pw/kernel", rules) == 0.01
    assert transfer.lr_multiplier("predictions/kernel", rules) == 1.0
    assert transfer.lr_multiplier("stage4_block2_pw/kernel", {"stage4": 0.1, "stage4_block2": 0.5}) == 0.5
    with pytest.raises(ConfigError, match="stage4=0.1"):
        transfer.parse_lr_mult("stage4=fast")


def _tiny() -> keras.Model:
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="stage1_fc")(inputs)
    x = keras.layers.Dense(3, name="stage2_fc")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="predictions")(x))


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")


def _weights(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: v.numpy().copy() for v in model.weights}


def test_sgd_step_of_each_stage_is_its_multiplier_times_the_gradient_step() -> None:
    keras.utils.set_random_seed(0)
    model = _tiny()
    x, y = _batch()
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x))
    gradients = {v.path: g.numpy() for v, g in zip(model.trainable_weights, tape.gradient(loss, model.trainable_weights))}
    before = _weights(model)
    rules = {"stage1": 0.1, "stage2": 0.5, "head": 2.0}
    model.compile(optimizer=transfer.make_optimizer("sgd", 0.1, rules, momentum=0.0), loss="mse")
    model.fit(x, y, batch_size=8, verbose=0, shuffle=False)
    after = _weights(model)
    multipliers = {"stage1_fc": 0.1, "stage2_fc": 0.5, "predictions": 2.0}
    for path, gradient in gradients.items():
        assert np.abs(gradient).max() > 0, path
        expected = -0.1 * multipliers[path.split("/")[0]] * gradient  # multiplier x the plain SGD step
        np.testing.assert_allclose(after[path] - before[path], expected, rtol=1e-4, atol=1e-7, err_msg=path)


def test_multiplier_zero_freezes_a_stage_under_adamw_weight_decay() -> None:
    keras.utils.set_random_seed(0)
    model = _tiny()
    before = _weights(model)
    x, y = _batch()
    model.compile(optimizer=transfer.make_optimizer("adamw", 0.01, "stage1=0", weight_decay=0.5), loss="mse")
    model.fit(np.tile(x, (3, 1)), np.tile(y, (3, 1)), batch_size=8, verbose=0, shuffle=False)  # 3 steps
    after = _weights(model)
    for path in before:
        if path.startswith("stage1_fc/"):
            np.testing.assert_array_equal(after[path], before[path], err_msg=path)
        else:
            assert not np.array_equal(after[path], before[path]), path


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_weight_decay_is_scaled_by_the_multiplier(name: str) -> None:
    # A zero gradient leaves only the decay: w <- w - lr * multiplier * weight_decay * w.
    lr, decay = 0.1, 0.2
    keras.utils.set_random_seed(0)
    model = _tiny()
    before = _weights(model)
    optimizer = transfer.make_optimizer(name, lr, {"stage1": 0.5, "stage2": 0.0}, weight_decay=decay)
    optimizer.apply([keras.ops.zeros_like(v) for v in model.trainable_weights], model.trainable_weights)
    after = _weights(model)
    multipliers = {"stage1_fc": 0.5, "stage2_fc": 0.0, "predictions": 1.0}
    for path, w in before.items():
        expected = w - lr * multipliers[path.split("/")[0]] * decay * w
        np.testing.assert_allclose(after[path], expected, rtol=1e-6, atol=1e-9, err_msg=path)
        if path.startswith("stage2_fc/"):
            np.testing.assert_array_equal(after[path], w)
    kernel = "stage1_fc/kernel"
    half, full = before[kernel] - after[kernel], lr * decay * before[kernel]
    assert np.abs(full).max() > 0
    np.testing.assert_allclose(half, 0.5 * full, rtol=1e-4, atol=1e-9)


def test_multipliers_of_one_train_like_the_plain_optimizer() -> None:
    def train(optimizer: keras.optimizers.Optimizer) -> dict[str, np.ndarray]:
        keras.utils.set_random_seed(0)
        model = _tiny()
        x, y = _batch()
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(np.tile(x, (3, 1)), np.tile(y, (3, 1)), batch_size=8, verbose=0, shuffle=False)
        return _weights(model)

    plain = train(keras.optimizers.AdamW(0.01, weight_decay=0.5))
    multiplied = train(transfer.make_optimizer("adamw", 0.01, {"stage1": 1.0}, weight_decay=0.5))
    for path in plain:
        np.testing.assert_allclose(multiplied[path], plain[path], rtol=1e-6, atol=1e-8, err_msg=path)


def test_compiled_keras_file_keeps_the_multipliers(tmp_path: Path) -> None:
    model = _tiny()
    model.compile(optimizer=transfer.make_optimizer("adam", 1e-3, {"stage1": 0.25}), loss="mse")
    model.fit(np.ones((4, 4)), np.ones((4, 2)), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, optimizers.MultipliedAdam)
    assert loaded.optimizer.lr_multipliers == {"stage1": 0.25}
    loaded.fit(np.ones((4, 4)), np.ones((4, 2)), verbose=0)


MIRRORED = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from transferkit import transfer

    def run(strategy, lr_mult, name="sgd", **kwargs):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            inputs = keras.Input((4,))
            x = keras.layers.Dense(3, name="stage1_fc")(inputs)
            model = keras.Model(inputs, keras.layers.Dense(2, name="predictions")(x))
            model.compile(optimizer=transfer.make_optimizer(name, 0.1, lr_mult, momentum=0.0, **kwargs), loss="mse")
        before = model.get_layer("stage1_fc").get_weights()[0]
        x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
        model.fit(x, np.ones((8, 2), "float32"), batch_size=8, verbose=0, shuffle=False)
        return model.get_layer("stage1_fc").get_weights()[0] - before

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    plain = run(mirrored, None)
    scaled = run(mirrored, {"stage1": 0.1})
    single = run(tf.distribute.get_strategy(), {"stage1": 0.1})
    np.testing.assert_allclose(scaled, 0.1 * plain, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(scaled, single, rtol=1e-4, atol=1e-8)
    # Weight decay follows the multiplier on every replica: 0 leaves the stage bit-identical.
    assert not run(mirrored, {"stage1": 0.0}, weight_decay=0.5).any()
    decayed = run(mirrored, {"stage1": 0.5}, weight_decay=0.5)
    np.testing.assert_allclose(decayed, run(tf.distribute.get_strategy(), {"stage1": 0.5}, weight_decay=0.5), rtol=1e-4, atol=1e-8)
    print("OK", float(np.abs(plain).max()))
    """
)


def test_multipliers_under_mirrored_strategy_with_two_devices() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", MIRRORED], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("OK") and float(done.stdout.split()[1]) > 0
