"""finetune under tf.distribute, in subprocesses (TensorFlow's devices are fixed once it starts):
MirroredStrategy over two logical CPUs, and MultiWorkerMirroredStrategy with two workers on
127.0.0.1 that must end with the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuning.conftest import make_images
from tuning.test_distributed import _free_port

ROOT = Path(__file__).resolve().parents[2]

RUN = """
import hashlib, sys
import numpy as np
import tensorflow as tf

if sys.argv[3] == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from transferkit.runs.finetune import FinetuneConfig, finetune

result = finetune(FinetuneConfig(
    base="resnet20", weights=None, data=sys.argv[1], out=sys.argv[2], image_size=32, batch_size=8,
    epochs=1, fine_tune_epochs=1, unfreeze_from="stage3", augment=False, val_split=0.25,
    distribute=sys.argv[3], frozen_cache=len(sys.argv) < 5,
), verbose=0)
digest = hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in result.model.get_weights())).hexdigest()
print("OUT", result.out)
print("WEIGHTS", digest)
print("VARIABLE", type(result.model.trainable_weights[0].value).__name__)
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("dist") / "images", per_class=8)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}", TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def _lines(stdout: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stdout.splitlines() if line.split(" ", 1)[0].isupper())


def test_mirrored_finetune_on_two_replicas(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(images), str(out), "mirrored"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _lines(proc.stdout)["VARIABLE"] == "MirroredVariable"  # built under the strategy's scope
    config = json.loads((out / "config.json").read_text())
    assert config["distribute"] == "mirrored" and config["num_replicas"] == 2
    assert [r["phase"] for r in json.loads((out / "metrics.json").read_text())["epochs"]] == ["head", "fine_tune"]


def test_multi_worker_finetune_on_localhost(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN, str(images), str(out), "multi_worker"],
            env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
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
        env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "needs TF_CONFIG" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
