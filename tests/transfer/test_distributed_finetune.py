"""finetune under tf.distribute, in subprocesses (TensorFlow's devices are fixed once it starts):
MirroredStrategy over two logical CPUs, with and without the frozen-layer cache, must train the
weights one device trains for the same seed and global batch; MultiWorkerMirroredStrategy with two
workers on 127.0.0.1 must end with the same weights on both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from processes import free_port, wait_together
from random_init import random_init
from tuning.conftest import make_images

ROOT = Path(__file__).resolve().parents[2]

RUN = """
import hashlib, json, sys
import numpy as np
import tensorflow as tf

if sys.argv[3] == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from transferkit.runs.finetune import FinetuneConfig, finetune

settings = dict(
    base="resnet20", weights=sys.argv[5], data=sys.argv[1], out=sys.argv[2], image_size=32, batch_size=8,
    epochs=1, fine_tune_epochs=1, unfreeze_from="stage3", augment=False, val_split=0.25,
    distribute=None if sys.argv[3] == "one_device" else sys.argv[3],
)
result = finetune(FinetuneConfig(**{**settings, **json.loads(sys.argv[4])}), verbose=0)
np.savez(f"{sys.argv[2]}.{'chief' if result.out else 'worker'}.npz", **{w.path: np.asarray(w) for w in result.model.weights})
digest = hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in result.model.get_weights())).hexdigest()
print("OUT", result.out)
print("WEIGHTS", digest)
print("VARIABLE", type(result.model.trainable_weights[0].value).__name__)
"""

# One device and two replicas train the same weights when nothing depends on the replica: no
# dropout (its masks are drawn per replica), BatchNormalization frozen (finetune's default), so no
# per-replica batch statistics; SGD, whose step is linear in the gradient (Adam's first steps are
# about lr * sign(gradient), so they turn round-off in near-zero gradients into steps of size lr);
# phase 1 gets a learning rate too small to matter, so phase 2 does the training; and one global batch of
# all 12 training images per epoch (6 per replica), so the order of examples cannot differ.
SAME = dict(dropout=0.0, optimizer="sgd", lr=1e-6, fine_tune_epochs=2, fine_tune_lr=0.05, batch_size=12)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("dist") / "images", per_class=8)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}", TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def _init(images: Path) -> str:
    """The random init (seed 0) every run starts from: finetune refuses weights=None."""
    return random_init(images.parent / "init.weights.h5")


def _lines(stdout: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stdout.splitlines() if line.split(" ", 1)[0].isupper())


def _finetune(images: Path, out: Path, mode: str, **settings: object) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(images), str(out), mode, json.dumps(settings), _init(images)], env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _lines(proc.stdout)


def _trained(out: Path) -> dict[str, np.ndarray]:
    with np.load(f"{out}.chief.npz") as f:
        return dict(f)


@pytest.fixture(scope="module")
def one_device(images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("one_device") / "run"
    _finetune(images, out, "one_device", **SAME)
    return _trained(out)


def _assert_same_training(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert got.keys() == expected.keys()
    initial = _initial_weights()
    for path in ("predictions/kernel", "stage3_block3_conv2/kernel"):  # training moved them well past the tolerance
        assert np.abs(expected[path] - initial[path]).max() > 1e-3, path
    for path in expected:
        np.testing.assert_allclose(got[path], expected[path], rtol=1e-3, atol=1e-5, err_msg=path)


def _initial_weights() -> dict[str, np.ndarray]:
    import keras

    from transferkit.models import build_model

    keras.utils.set_random_seed(0)
    return {w.path: np.asarray(w) for w in build_model("resnet20", 2, None, 32, dropout=0.0).weights}


def test_mirrored_finetune_on_two_replicas_trains_as_one_device(
    images: Path, tmp_path: Path, one_device: dict[str, np.ndarray]
) -> None:
    out = tmp_path / "run"
    lines = _finetune(images, out, "mirrored", **SAME)
    assert lines["VARIABLE"] == "MirroredVariable"  # built under the strategy's scope
    assert json.loads((out / "config.json").read_text())["num_replicas"] == 2
    assert [r["phase"] for r in json.loads((out / "metrics.json").read_text())["epochs"]] == ["head", "fine_tune", "fine_tune"]
    _assert_same_training(_trained(out), one_device)


def test_mirrored_finetune_without_the_frozen_cache(images: Path, tmp_path: Path, one_device: dict[str, np.ndarray]) -> None:
    out = tmp_path / "run"
    assert _finetune(images, out, "mirrored", frozen_cache=False, **SAME)["VARIABLE"] == "MirroredVariable"
    _assert_same_training(_trained(out), one_device)


def test_multi_worker_finetune_on_localhost(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    logs = [[open(tmp_path / f"worker{i}.{stream}", "w+") for stream in ("out", "err")] for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN, str(images), str(out), "multi_worker", "{}", _init(images)],
            env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
            stdout=stdout, stderr=stderr, text=True,
        )
        for i, (stdout, stderr) in enumerate(logs)
    ]
    try:
        wait_together(procs)  # a crashed worker would leave its peer waiting in a collective forever
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for files in logs:
            for f in files:
                f.close()
    results = [((tmp_path / f"worker{i}.out").read_text(), (tmp_path / f"worker{i}.err").read_text()) for i in range(2)]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    chief, worker = (_lines(stdout) for stdout, _ in results)
    assert chief["OUT"] == str(out) and worker["OUT"] == "None"  # only the chief writes
    assert chief["WEIGHTS"] == worker["WEIGHTS"]  # synchronous training: the same model on both
    config = json.loads((out / "config.json").read_text())
    assert config["distribute"] == "multi_worker" and config["num_replicas"] == 2
    assert (out / "model.keras").is_file() and (out / "saved_model").is_dir()


def test_multi_worker_without_tf_config_is_a_one_line_error(images: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "transferkit", "finetune", "--data", str(images), "--out", str(tmp_path / "run"),
         "--distribute", "multi_worker", "--quiet"],
        env=_env(), capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "needs TF_CONFIG" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
