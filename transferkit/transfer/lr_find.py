"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates for Training Neural
Networks", arXiv:1506.01186, section 3.3; fastai's ``lr_find``): train for a few batches while
the learning rate grows geometrically, record the loss, and read a good rate off the curve.

:class:`RangeTest` is a Keras callback for ``model.fit``; :func:`steepest` and :func:`valley`
are fastai's suggestion rules over the smoothed curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from transferkit.errors import ConfigError

SMOOTHING = 0.98  # fastai's: an exponential moving average of the batch losses, debiased
DIVERGENCE = 4.0  # stop once the smoothed loss exceeds this many times the best one


def check_range(start_lr: float, end_lr: float, steps: int) -> None:
    """Refuses an empty or inverted range."""
    if not start_lr > 0:
        raise ConfigError(f"start_lr must be positive, got {start_lr}")
    if not end_lr > start_lr:
        raise ConfigError(f"end_lr must be above start_lr, got start_lr {start_lr} and end_lr {end_lr}")
    if steps < 2:
        raise ConfigError(f"steps must be at least 2 (the rate grows from start_lr to end_lr over them), got {steps}")


def rate_at(step: int, start_lr: float, end_lr: float, steps: int) -> float:
    """The learning rate of batch ``step`` (0-based): ``start_lr`` at 0, ``end_lr`` at ``steps - 1``."""
    return start_lr * (end_lr / start_lr) ** (step / (steps - 1))


def smooth(losses: Sequence[float], beta: float = SMOOTHING) -> np.ndarray:
    """fastai's debiased exponential moving average of ``losses``."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return np.asarray(out, dtype="float64")


def _trimmed(lrs: Sequence[float], losses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """fastai leaves out the first tenth (the average is still settling) and the last five points
    (the divergence) before reading a suggestion, when the curve is long enough for that."""
    lrs, losses = np.asarray(lrs, dtype="float64"), np.asarray(losses, dtype="float64")
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    first, last = len(lrs) // 10, len(lrs) - 5
    if last - first >= 3:
        return lrs[first:last], losses[first:last]
    return lrs, losses


def steepest(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The rate at which the loss falls fastest per decade of learning rate (minimum gradient
    against ``log10(lr)``)."""
    lrs, losses = _trimmed(lrs, losses)
    if len(lrs) < 2:
        raise ConfigError("the range test recorded fewer than 2 points; give more --steps")
    return float(lrs[int(np.argmin(np.gradient(losses, np.log10(lrs))))])


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's valley rule: the longest stretch over which the loss keeps falling (the longest
    decreasing subsequence), and the rate in the middle of its second third (``start + len/3 +
    len/6``): well past the flat start, well before the divergence."""
    lrs, losses = _trimmed(lrs, losses)
    n = len(losses)
    if n < 2:
        raise ConfigError("the range test recorded fewer than 2 points; give more --steps")
    longest = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end = i
            start = end - longest[end]
    sections = (end - start) / 3
    return float(lrs[start + int(sections) + int(sections / 2)])


@dataclass
class Curve:
    """What a range test recorded, and its suggestions.

    Attributes:
        lrs: The learning rate of each batch.
        losses: Each batch's training loss.
        smoothed: :func:`smooth` of ``losses``.
        diverged: The test stopped before its last step because the loss diverged.
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    diverged: bool = False

    @property
    def smoothed(self) -> np.ndarray:
        return smooth(self.losses)

    @property
    def steepest(self) -> float:
        return steepest(self.lrs, self.smoothed)

    @property
    def valley(self) -> float:
        return valley(self.lrs, self.smoothed)

    @property
    def suggestion(self) -> float:
        """The suggested rate: the valley's."""
        return self.valley

    def rows(self) -> list[dict[str, float]]:
        return [
            {"step": i, "lr": lr, "loss": loss, "smoothed_loss": float(s)}
            for i, (lr, loss, s) in enumerate(zip(self.lrs, self.losses, self.smoothed))
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "steps": len(self.lrs), "diverged": self.diverged, "steepest": self.steepest,
            "valley": self.valley, "suggestion": self.suggestion,
        }


class RangeTest(keras.callbacks.Callback):
    """Sets the optimizer's learning rate of every batch (growing geometrically from ``start_lr``
    to ``end_lr`` over ``steps`` batches), records each batch's loss and stops ``fit`` after
    ``steps`` batches or once the smoothed loss diverges (over ``DIVERGENCE`` times its best, or
    not finite). Give ``fit`` at least ``steps`` batches (over any number of epochs).

    Attributes:
        curve: The recorded :class:`Curve`.
    """

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100) -> None:
        super().__init__()
        check_range(start_lr, end_lr, steps)
        self.start_lr, self.end_lr, self.steps = start_lr, end_lr, steps
        self.curve = Curve()
        self._average, self._best = 0.0, math.inf

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.model.optimizer.learning_rate = rate_at(len(self.curve.lrs), self.start_lr, self.end_lr, self.steps)
        # Keras' logged loss is the epoch's running mean; reset, it is this batch's loss.
        self.model.reset_metrics()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = float((logs or {})["loss"])
        self.curve.lrs.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        self.curve.losses.append(loss)
        self._average = SMOOTHING * self._average + (1 - SMOOTHING) * loss
        current = self._average / (1 - SMOOTHING ** len(self.curve.losses)) if math.isfinite(loss) else math.inf
        self._best = min(self._best, current)
        if not math.isfinite(current) or current > DIVERGENCE * self._best:
            self.curve.diverged = len(self.curve.lrs) < self.steps
            self.model.stop_training = True
        elif len(self.curve.lrs) >= self.steps:
            self.model.stop_training = True
