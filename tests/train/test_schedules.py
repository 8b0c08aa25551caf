"""The papers' schedules: the learning rate a real run's optimizer uses at each step, the
coupled weight decay and label smoothing, against values computed here from the papers."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.errors import ConfigError
from transferkit.transfer import schedules


class _LearningRates(keras.callbacks.Callback):
    """The optimizer's learning rate at the start of every training step, by step."""

    def __init__(self) -> None:
        super().__init__()
        self.by_step: dict[int, float] = {}

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        # Keras also calls this once more at the end of an epoch of unknown length (no step follows).
        optimizer = self.model.optimizer
        self.by_step[int(optimizer.iterations)] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    @property
    def rates(self) -> list[float]:
        return [self.by_step[s] for s in sorted(self.by_step)]


def _run(tmp_path: Path, base: str, schedule: str, epochs: int) -> tuple[list[float], int, keras.optimizers.Optimizer]:
    from transferkit.runs.train import TrainConfig, train
    from transferkit.data import DataOptions

    record = _LearningRates()
    config = TrainConfig(
        base=base, data="digits", image_size=8, schedule=schedule, epochs=epochs, batch_size=64, val_split=0.1,
        out=str(tmp_path / base), run_eagerly=True, data_options=DataOptions(train_fraction=0.25),
    )
    result = train(config, verbose=0, callbacks=[record])
    train_images = sum(1 for s in result_splits(result.out) if s == "train")
    per_epoch = math.ceil(train_images / 64)
    return record.rates[: epochs * per_epoch], per_epoch, record.model.optimizer


def result_splits(out: Path) -> list[str]:
    import csv

    with open(Path(out) / "split.csv", newline="") as f:
        return [row["split"] for row in csv.DictReader(f)]


def test_resnet_cifar_run_divides_by_10_at_half_and_three_quarters(tmp_path: Path) -> None:
    rates, per_epoch, optimizer = _run(tmp_path, "resnet20", "resnet-cifar", 4)
    total = 4 * per_epoch
    assert len(rates) == total and total >= 12
    # He et al. 2016: 0.1, divided by 10 at 32k and 48k of 64k iterations; no warm-up for ResNet-20.
    expected = [0.1 if s < total / 2 else 0.01 if s < total * 3 / 4 else 0.001 for s in range(total)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert isinstance(optimizer, keras.optimizers.SGD) and float(optimizer.momentum) == 0.9 and not optimizer.nesterov


def test_wrn_run_multiplies_by_0_2_at_30_60_80_percent(tmp_path: Path) -> None:
    rates, per_epoch, optimizer = _run(tmp_path, "wrn_10_1", "wrn", 5)
    total = 5 * per_epoch
    assert len(rates) == total and total >= 15
    # Zagoruyko & Komodakis 2016: 0.1, x0.2 at epochs 60, 120 and 160 of 200.
    expected = [0.1 * 0.2 ** sum(s >= round(f * total) for f in (60 / 200, 120 / 200, 160 / 200)) for s in range(total)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert optimizer.nesterov and float(optimizer.momentum) == 0.9


def test_resnet110_warms_up_at_0_01_for_about_400_iterations() -> None:
    schedule = schedules.resolve("resnet-cifar", "resnet110", epochs=160)
    lr = schedules.learning_rate(schedule, steps_per_epoch=391)  # CIFAR-10 at batch 128
    assert float(lr(0)) == pytest.approx(0.01) and float(lr(390)) == pytest.approx(0.01)  # ~400 iterations
    assert float(lr(391)) == pytest.approx(0.1)
    # 160 epochs x 391 = 62,560 steps: /10 at 50% (31,280) and 75% (46,920).
    assert float(lr(31_279)) == pytest.approx(0.1) and float(lr(31_280)) == pytest.approx(0.01)
    assert float(lr(46_920)) == pytest.approx(0.001)
    assert schedules.resolve("resnet-cifar", "resnet20").warmup_epochs == 0


def test_cosine_warms_up_linearly_then_follows_half_a_cosine() -> None:
    lr = schedules.learning_rate(schedules.resolve("cosine", epochs=10, lr=0.2, warmup_epochs=2), steps_per_epoch=10)
    for step, expected in ((0, 0.0), (10, 0.1), (20, 0.2), (60, 0.2 * 0.5 * (1 + math.cos(math.pi * 40 / 80)))):
        assert float(lr(step)) == pytest.approx(expected, abs=1e-6), step


def test_weight_decay_is_the_papers_l2_through_momentum() -> None:
    """PyTorch/Caffe SGD: g' = g + wd*w; v = m*v + g'; w -= lr*v (Keras' own weight_decay is not this)."""
    lr, m, wd = 0.1, 0.9, 5e-4
    w0 = np.array([1.0, -2.0, 3.0], np.float32)
    grads = [np.array([0.5, 0.1, -0.2], np.float32), np.array([0.0, 0.3, 0.1], np.float32)]
    var = keras.Variable(w0.copy())
    opt = schedules.make_training(schedules.resolve("constant", lr=lr, weight_decay=wd), 1).optimizer
    w, v = w0.astype(np.float64), np.zeros(3)
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        v = m * v + (g + wd * w)
        w = w - lr * v
    np.testing.assert_allclose(np.asarray(var), w, rtol=1e-6)


def test_label_smoothing_spreads_epsilon_over_the_classes() -> None:
    loss = schedules.make_training(schedules.resolve("constant", label_smoothing=0.1), 1).loss
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    y = np.array([0, 2])
    target = np.full((2, 3), 0.1 / 3) + np.eye(3)[y] * 0.9
    expected = float(np.mean(-(target * np.log(p)).sum(axis=1)))
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-5)


def test_unknown_schedule_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transferkit.cli import main

    with pytest.raises(ConfigError, match="unknown schedule 'sgdr'; choose one of resnet-cifar, wrn, vgg, cosine, one-cycle, constant"):
        schedules.resolve("sgdr")
    capsys.readouterr()
    assert main(["train", "--schedule", "sgdr", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown schedule" in err and not (tmp_path / "run").exists()


def test_one_cycle_preset_warms_up_over_30_percent_then_anneals() -> None:
    # Smith & Topin 2017 / fastai: from lr/25 up to lr over 30% of the steps, then cosine to 0.
    schedule = schedules.resolve("one-cycle", epochs=4)
    rate = schedules.learning_rate(schedule, steps_per_epoch=25)
    total, warm, lr = 100, 30, schedule.lr
    expected = [
        lr / 25 + (lr - lr / 25) * s / warm if s < warm else lr * 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
        for s in range(total + 1)
    ]
    got = [float(keras.ops.convert_to_numpy(rate(s))) for s in range(total + 1)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)  # float32
    assert max(got) == pytest.approx(lr) and got[-1] == pytest.approx(0.0, abs=1e-9)
