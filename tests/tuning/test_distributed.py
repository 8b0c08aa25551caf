"""Distributed search, in subprocesses (TensorFlow's devices are fixed once it initialises):
trials under MirroredStrategy over two logical CPUs, and keras-tuner's chief/worker mode over
gRPC on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from processes import free_port, wait_together

ROOT = Path(__file__).resolve().parents[2]

MIRRORED = """
import sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from transferkit import tuning

result = tuning.tune(
    "wrn_10_1", sys.argv[1], {"width": [1, 2]}, max_trials=1, epochs=1, batch_size=8,
    val_split=0.25, augment=False, out=sys.argv[2], distribute="mirrored", verbose=0,
)
print("REPLICAS", tuning.make_strategy("mirrored").num_replicas_in_sync)
print("VARIABLE", type(result.model.trainable_weights[0].value).__name__)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def test_mirrored_strategy_trains_trials_on_two_replicas(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tiny_data), str(out)],
        env=_env(), capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REPLICAS 2" in proc.stdout
    assert "VARIABLE MirroredVariable" in proc.stdout  # built under the strategy's scope
    config = json.loads((out / "config.json").read_text())
    assert config["distribute"] == "mirrored" and config["num_replicas"] == 2
    assert len(json.loads((out / "trials.json").read_text())) == 1


def test_chief_and_worker_search_on_localhost(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    port = str(free_port())
    argv = [
        sys.executable, "-m", "transferkit", "tune", "--base", "wrn_10_1", "--data", str(tiny_data),
        "--space-preset", "head", "--max-trials", "1", "--epochs", "1", "--batch-size", "8",
        "--val-split", "0.25", "--no-augment", "--out", str(out), "--quiet",
    ]
    oracle = dict(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=port)
    logs = {name: [open(tmp_path / f"{name}.{stream}", "w+") for stream in ("out", "err")] for name in ("chief", "worker")}
    chief = subprocess.Popen(argv, env=_env(KERASTUNER_TUNER_ID="chief", **oracle), stdout=logs["chief"][0], stderr=logs["chief"][1], text=True)
    procs = [chief]
    try:
        # Start the worker once the chief has claimed the search folder (as docs/tuning.md says).
        while not (tmp_path / ".run.tuner" / "transferkit_search.json").exists():
            assert chief.poll() is None, (tmp_path / "chief.err").read_text()[-3000:]
            time.sleep(0.5)
        worker = subprocess.Popen(
            argv, env=_env(KERASTUNER_TUNER_ID="tuner0", **oracle), stdout=logs["worker"][0], stderr=logs["worker"][1], text=True
        )
        procs.append(worker)
        wait_together(procs)  # a crashed worker would leave the chief waiting for its trial
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for files in logs.values():
            for f in files:
                f.close()
    w_out, w_err, c_err = ((tmp_path / name).read_text() for name in ("worker.out", "worker.err", "chief.err"))
    assert worker.returncode == 0, w_err[-3000:]
    assert "worker done" in w_out
    assert chief.returncode == 0, c_err[-3000:]
    trials = json.loads((out / "trials.json").read_text())
    assert len(trials) == 1 and trials[0]["status"] == "COMPLETED"
    best = json.loads((out / "best_hyperparameters.json").read_text())
    assert best == trials[0]["hyperparameters"] and set(best) == {"dropout", "hidden_units", "lr"}
    assert (out / "model.keras").is_file()
