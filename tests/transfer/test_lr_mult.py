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


def _one_step(optimizer: keras.optimizers.Optimizer) -> dict[str, np.ndarray]:
    keras.utils.set_random_seed(0)
    model = _tiny()
    before = {l.name: l.get_weights()[0] for l in model.layers[1:]}
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(np.ones((8, 4), "float32"), np.ones((8, 2), "float32"), batch_size=8, verbose=0, shuffle=False)
    return {l.name: l.get_weights()[0] - before[l.name] for l in model.layers[1:]}


def test_sgd_steps_are_scaled_exactly() -> None:
    plain = _one_step(keras.optimizers.SGD(0.1))
    scaled = _one_step(transfer.make_optimizer("sgd", 0.1, "stage1=0.1,stage2=0", momentum=0.0))
    np.testing.assert_allclose(scaled["stage1_fc"], 0.1 * plain["stage1_fc"], rtol=1e-4, atol=1e-7)
    assert not scaled["stage2_fc"].any() and plain["stage2_fc"].any()
    np.testing.assert_allclose(scaled["predictions"], plain["predictions"], rtol=1e-4, atol=1e-7)


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

    def run(strategy, lr_mult):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            inputs = keras.Input((4,))
            x = keras.layers.Dense(3, name="stage1_fc")(inputs)
            model = keras.Model(inputs, keras.layers.Dense(2, name="predictions")(x))
            model.compile(optimizer=transfer.make_optimizer("sgd", 0.1, lr_mult, momentum=0.0), loss="mse")
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
    print("OK", float(np.abs(plain).max()))
    """
)


def test_multipliers_under_mirrored_strategy_with_two_devices() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", MIRRORED], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("OK") and float(done.stdout.split()[1]) > 0
