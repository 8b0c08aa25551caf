"""The papers' training settings as named presets: optimizer, learning-rate schedule, weight decay,
batch size, label smoothing and warm-up, each citing its source (data, not code).

:func:`resolve` applies a user's overrides to a preset; :func:`make_training` turns the result
into Keras' own pieces for one run: an optimizer whose learning rate is a Keras
``LearningRateSchedule`` (or a number that Keras' ``ReduceLROnPlateau`` lowers), the loss, and
the callbacks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import keras

from transferkit.errors import ConfigError
from transferkit.transfer.optimizers import ema_options

DECAYS = ("step", "plateau", "cosine", "one-cycle", "constant")
ONE_CYCLE_WARMUP = 0.3  # fraction of the steps spent warming up (Smith & Topin 2017; fastai's pct_start)
ONE_CYCLE_DIV = 25.0  # the warm-up starts at lr / 25 (fastai's div)


@dataclass(frozen=True)
class Schedule:
    """One paper's training settings.

    Attributes:
        name: Preset name (``--schedule``).
        source: Where the numbers come from.
        optimizer: ``"sgd"`` (the papers') or ``"adam"``.
        lr: Peak learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 weight decay, coupled as in the papers (added to the gradient, then
            through momentum), applied to every weight.
        batch_size: The paper's batch size.
        epochs: Epochs when the user gives none (a small default, not the paper's budget).
        decay: ``"step"`` (``lr * factor**k`` after each milestone), ``"plateau"`` (``lr *
            factor`` when validation accuracy stops improving), ``"cosine"``, ``"one-cycle"``
            (:func:`decay_schedule`) or ``"constant"``.
        milestones: Fractions of training (in steps) at which a step decay multiplies by ``factor``.
        factor: The decay factor.
        patience: Epochs without a better validation accuracy before a plateau decay.
        warmup_epochs: Epochs of warm-up at the start.
        warmup: ``"constant"`` (``warmup_lr`` then ``lr``, ResNet's) or ``"linear"`` (0 to ``lr``).
        warmup_lr: Learning rate of a constant warm-up.
        warmup_bases: Base models the warm-up is for (None: all of them).
        label_smoothing: Label smoothing of the cross-entropy.
    """

    name: str
    source: str
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 30
    decay: str = "constant"
    milestones: tuple[float, ...] = ()
    factor: float = 0.1
    patience: int = 3
    warmup_epochs: float = 0.0
    warmup: str = "linear"
    warmup_lr: float = 0.0
    warmup_bases: tuple[str, ...] | None = None
    label_smoothing: float = 0.0


RESNET = "He et al. 2016, Deep Residual Learning for Image Recognition, CVPR, arXiv:1512.03385, section 4.2"
WRN = "Zagoruyko & Komodakis 2016, Wide Residual Networks, BMVC, arXiv:1605.07146, section 4"
VGG = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks, ICLR, arXiv:1409.1556, section 3.1"
ONE_CYCLE = (
    "Smith & Topin 2017, Super-Convergence, arXiv:1708.07120 (one cycle); fastai's fit_one_cycle "
    "(warm-up over 30% from lr/25, then cosine annealing)"
)
COSINE = (
    "Loshchilov & Hutter 2017, SGDR, ICLR, arXiv:1608.03983 (cosine); Goyal et al. 2017, "
    "arXiv:1706.02677 (linear warm-up)"
)

SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in (
        # lr 0.1, /10 at 32k and 48k of 64k iterations (50%, 75%), wd 1e-4, momentum 0.9, batch
        # 128; ResNet-110 and -1202 start at 0.01 until training error is below 80% (about 400
        # iterations, about one CIFAR epoch at batch 128).
        Schedule(
            "resnet-cifar", RESNET, lr=0.1, weight_decay=1e-4, decay="step", milestones=(0.5, 0.75),
            factor=0.1, warmup_epochs=1, warmup="constant", warmup_lr=0.01, warmup_bases=("resnet110", "resnet1202"),
        ),
        # Nesterov 0.9, lr 0.1 x0.2 at epochs 60, 120, 160 of 200 (30/60/80%), wd 5e-4, batch 128.
        Schedule(
            "wrn", WRN, lr=0.1, nesterov=True, weight_decay=5e-4, decay="step", milestones=(0.3, 0.6, 0.8), factor=0.2,
        ),
        # Momentum 0.9, lr 0.01 divided by 10 when validation accuracy stops improving, wd 5e-4,
        # batch 256; dropout 0.5 in the first two FC layers (the VGG head's default).
        Schedule("vgg", VGG, lr=0.01, weight_decay=5e-4, batch_size=256, decay="plateau", factor=0.1, patience=3),
        Schedule("cosine", COSINE, lr=0.1, nesterov=True, weight_decay=5e-4, decay="cosine", warmup_epochs=1),
        Schedule("one-cycle", ONE_CYCLE, lr=0.1, nesterov=True, weight_decay=5e-4, decay="one-cycle"),
        Schedule("constant", "a constant learning rate (no paper)", lr=0.01, decay="constant"),
    )
}

OVERRIDABLE = (
    "lr", "epochs", "batch_size", "weight_decay", "momentum", "nesterov", "label_smoothing", "warmup_epochs",
)


def get_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    return SCHEDULES[name]


def resolve(name: str, base: str | None = None, **overrides: Any) -> Schedule:
    """The preset ``name`` with the overrides that are not None; a warm-up meant for other base
    models is dropped unless ``warmup_epochs`` is given."""
    schedule = get_schedule(name)
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ConfigError(f"schedule settings {unknown} cannot be overridden; valid: {', '.join(OVERRIDABLE)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if schedule.warmup_bases is not None and base not in schedule.warmup_bases and "warmup_epochs" not in given:
        given["warmup_epochs"] = 0.0
    schedule = dataclasses.replace(schedule, **given)
    for field in ("lr", "epochs", "batch_size"):
        if getattr(schedule, field) <= 0:
            raise ConfigError(f"{field} must be positive, got {getattr(schedule, field)}")
    for field in ("weight_decay", "warmup_epochs"):
        if getattr(schedule, field) < 0:
            raise ConfigError(f"{field} must be 0 or more, got {getattr(schedule, field)}")
    if not 0.0 <= schedule.momentum < 1.0:
        raise ConfigError(f"momentum must be in [0, 1), got {schedule.momentum}")
    if not 0.0 <= schedule.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {schedule.label_smoothing}")
    return schedule


def learning_rate(schedule: Schedule, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate as Keras computes it at each step: a number for the constant and plateau
    decays, else a Keras ``LearningRateSchedule`` over ``schedule.epochs * steps_per_epoch`` steps."""
    total = schedule.epochs * steps_per_epoch
    warm = int(round(schedule.warmup_epochs * steps_per_epoch))
    if schedule.decay in ("cosine", "one-cycle"):
        return decay_schedule(schedule.decay, schedule.lr, total, warm)
    # Keras keeps values[i] up to and including step boundaries[i]: a change "at step n" is a
    # boundary at n - 1.
    boundaries: list[int] = []
    values = [schedule.lr]
    if schedule.decay == "step":
        boundaries = [int(round(f * total)) - 1 for f in schedule.milestones]
        values = [schedule.lr * schedule.factor**k for k in range(len(boundaries) + 1)]
    if warm and schedule.warmup == "constant":
        boundaries, values = [warm - 1] + boundaries, [schedule.warmup_lr] + values
    elif warm:
        raise ConfigError(f"a linear warm-up goes with the cosine schedule, not {schedule.name!r}")
    if not boundaries:
        return float(values[0])
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def decay_schedule(
    decay: str, lr: float, total: int, warmup: int = 0
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate over ``total`` steps as Keras computes it at each step.

    ``constant``: ``lr``. ``cosine``: cosine decay from ``lr`` to 0 (after ``warmup`` steps of
    linear warm-up from 0). ``one-cycle``: linear warm-up from ``lr / 25`` to ``lr`` over 30% of
    the steps, then cosine decay to 0 (without the momentum cycle).
    """
    total = max(int(total), 1)
    if decay == "constant":
        return float(lr)
    if decay == "one-cycle":
        warm = max(int(round(ONE_CYCLE_WARMUP * total)), 1)
        return keras.optimizers.schedules.CosineDecay(
            lr / ONE_CYCLE_DIV, max(total - warm, 1), warmup_target=lr, warmup_steps=warm
        )
    if decay != "cosine":
        raise ConfigError(f"unknown learning-rate schedule {decay!r}; choose constant, cosine or one-cycle")
    if warmup:
        return keras.optimizers.schedules.CosineDecay(0.0, max(total - warmup, 1), warmup_target=lr, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(lr, total)


@keras.saving.register_keras_serializable(package="transferkit")
class CoupledDecaySGD(keras.optimizers.SGD):
    """SGD whose weight decay is the papers' L2 term: ``l2 * w`` added to the gradient before
    momentum (Keras' own ``weight_decay`` is decoupled, AdamW-style, which with momentum 0.9
    decays about ten times less than the papers did)."""

    def __init__(self, *args: Any, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> Any:
        if self.l2:
            gradient = gradient + keras.ops.cast(self.l2, variable.dtype) * variable
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package="transferkit")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels with label smoothing (Keras' sparse loss has none)."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "smoothed_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        classes = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), classes)
        return keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def classification_loss(label_smoothing: float = 0.0, soft_labels: bool = False) -> keras.losses.Loss:
    """The cross-entropy of a run: of one-hot (mixed) labels when ``soft_labels``, else of
    integer labels; with ``label_smoothing`` the targets are ``(1 - eps) * y + eps / classes``."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if soft_labels:
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    if label_smoothing:
        return SparseSmoothedCrossentropy(label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


@dataclass
class Training:
    """Keras' pieces of one run: ``model.compile(optimizer=..., loss=...)`` and ``fit``'s callbacks."""

    optimizer: keras.optimizers.Optimizer
    loss: Any
    callbacks: list[keras.callbacks.Callback]


def make_training(
    schedule: Schedule, steps_per_epoch: int, monitor: str = "val_accuracy", *, soft_labels: bool = False,
    ema: float | None = None,
) -> Training:
    """The optimizer, loss and callbacks of ``schedule`` for ``steps_per_epoch`` steps an epoch;
    a plateau decay watches ``monitor``. ``soft_labels``: the labels are one-hot (mixup,
    cutmix); ``ema``: the optimizer keeps a moving average of the weights with this momentum
    (:func:`~transferkit.transfer.optimizers.ema_options`)."""
    lr = learning_rate(schedule, steps_per_epoch)
    averaging = ema_options(ema)
    if schedule.optimizer == "sgd":
        optimizer: keras.optimizers.Optimizer = CoupledDecaySGD(
            learning_rate=lr, momentum=schedule.momentum, nesterov=schedule.nesterov, l2=schedule.weight_decay,
            **averaging,
        )
    elif schedule.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=lr, weight_decay=schedule.weight_decay or None, **averaging)
    else:
        raise ConfigError(f"schedule optimizer must be sgd or adam, got {schedule.optimizer!r}")
    loss = classification_loss(schedule.label_smoothing, soft_labels)
    callbacks: list[keras.callbacks.Callback] = []
    if schedule.decay == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, mode="max", factor=schedule.factor, patience=schedule.patience, verbose=0
            )
        )
    return Training(optimizer, loss, callbacks)
