"""``--tensorboard``: the run folder holds TensorBoard logs of every epoch of both phases, with
the same losses as history.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import transferkit as tk


def _scalars(folder: Path, tag: str) -> dict[int, float]:
    import tensorflow as tf

    values: dict[int, float] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def test_tensorboard_logs_land_in_the_run_folder(tmp_path: Path) -> None:
    run = tk.finetune(
        base="mobilenet_v1_025", data="sample", out=str(tmp_path / "run"), image_size=32, epochs=2,
        fine_tune_epochs=1, batch_size=16, tensorboard=True, verbose=0,
    )
    logs = run.out / "tensorboard"
    assert (logs / "train").is_dir() and (logs / "validation").is_dir()
    assert not list(tmp_path.glob(".run.progress*"))  # nothing left beside the run folder
    history = run.history
    train = _scalars(logs / "train", "epoch_loss")
    val = _scalars(logs / "validation", "epoch_loss")
    assert sorted(train) == sorted(val) == [0, 1, 2]  # two head epochs and one fine-tune epoch
    np.testing.assert_allclose([train[e] for e in range(3)], history.column("loss"), rtol=1e-5)
    np.testing.assert_allclose([val[e] for e in range(3)], history.column("val_loss"), rtol=1e-5)
