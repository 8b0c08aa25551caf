"""Training from scratch the papers' way: every layer trains from the first step, from random init
(or a weights file to continue), with a paper's schedule (:mod:`transferkit.transfer.schedules`);
the same run folder, resume and export as ``finetune``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import keras

from transferkit.runs.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.models import build_model, checked_image_size, drop_path_option, get_model_info, inference_model
from transferkit.runs import common, distribute
from transferkit.runs.folder import RunResult
from transferkit.transfer import check_precision, schedules
from transferkit.transfer.optimizers import ema_options


def resolve_schedule(config: TrainConfig) -> schedules.Schedule:
    """The run's schedule: the preset with the config's overrides."""
    given = {k: getattr(config, k) for k in schedules.OVERRIDABLE}
    return schedules.resolve(config.schedule, get_model_info(config.base).name, **given)


def _check(config: TrainConfig) -> tuple[int, schedules.Schedule, bool]:
    """Validates what can be checked before any data is read; returns the image size, the
    schedule and whether auxiliary classifiers train."""
    schedule = resolve_schedule(config)
    info = get_model_info(config.base)
    size = checked_image_size(info.name, config.weights, config.image_size)
    if config.aux and info.aux_heads is None:
        raise ConfigError(f"{info.name} has no auxiliary classifiers; drop --aux")
    aux = info.aux_heads is not None if config.aux is None else config.aux
    if not isinstance(config.model_options, dict):
        raise ConfigError(f"model_options must be a table of builder arguments, got {config.model_options!r}")
    check_precision(config.mixed_precision)
    ema_options(config.ema)
    drop_path_option(info.name, config.drop_path)
    return size, schedule, aux


def train(config: TrainConfig, verbose: int = 1, callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunResult:
    """Trains every layer of ``config.base`` with ``config.schedule`` and writes the run folder.

    An interrupted run resumes where it stopped when it is started again with the same settings.

    Args:
        config: The run's settings.
        verbose: 0 for silence, 1 for Keras progress bars and transferkit's log lines.
        callbacks: More Keras callbacks for ``fit``.

    Returns:
        The run folder, final validation accuracy, trained model (one output), class names and
        history (with ``main_loss`` and ``auxN_loss`` columns when auxiliary classifiers trained).
    """
    with common.strategy_scope(config.distribute, config.mixed_precision) as strategy:
        return _train(config, verbose, strategy, callbacks)


def build_training_model(config: TrainConfig, num_classes: int, size: int, aux: bool) -> keras.Model:
    """The model that trains: the paper's classifier (with its auxiliary outputs when ``aux``)."""
    head = {k: getattr(config, k) for k in ("dropout", "hidden_units") if getattr(config, k) is not None}
    if "hidden_units" in head:
        head["hidden_units"] = tuple(head["hidden_units"])
    options = {**config.model_options, **drop_path_option(config.base, config.drop_path)}
    return build_model(config.base, num_classes, config.weights, size, config.channels, aux_outputs=aux, **head, **options)


def compile_for_training(model: keras.Model, training: schedules.Training, run_eagerly: bool = False) -> None:
    """Compiles with the schedule's optimizer and loss; auxiliary outputs with their loss weights."""
    weights = getattr(model, "loss_weights_of_outputs", None)
    if weights is None:
        model.compile(optimizer=training.optimizer, loss=training.loss, metrics=["accuracy"], run_eagerly=run_eagerly)
        return
    model.compile(
        optimizer=training.optimizer,
        loss=[training.loss] * len(weights),
        loss_weights=list(weights),
        metrics=[["accuracy"]] + [[] for _ in weights[1:]],
        run_eagerly=run_eagerly,
    )


def _repeat_labels(ds: Any, n: int) -> Any:
    return ds.map(lambda x, y: (x, (y,) * n))


def _rename(row: dict[str, Any]) -> dict[str, Any]:
    """History columns of a model with auxiliary outputs under the usual names: ``accuracy``,
    ``val_accuracy``, ``main_loss``, ``aux1_loss``... (``loss`` is the weighted total)."""
    out = {}
    for key, value in row.items():
        key = key.replace("predictions_accuracy", "accuracy").replace("_predictions_loss", "_loss")
        out["main_loss" if key == "predictions_loss" else "val_main_loss" if key == "val_predictions_loss" else key] = value
    return out


def _train(config: TrainConfig, verbose: int, strategy: Any, callbacks: Sequence[keras.callbacks.Callback]) -> RunResult:
    from transferkit.data import load_data

    chief = distribute.is_chief(strategy)
    size, schedule, aux = _check(config)
    settings = {**dataclasses.asdict(config), "image_size": size, "aux": aux}
    out_dir = common.out_dir(config.out, config.base, settings, chief, config.resume, config.overwrite)
    options = config.data_options
    augment = options.augment_spec not in (None, "", "none", "off")
    data = load_data(
        config.data, size, schedule.batch_size, config.val_split, config.seed, augment,
        channels=config.channels or get_model_info(config.base).input_shape[2], **options.kwargs(),
    )
    keras.utils.set_random_seed(config.seed)
    model = build_training_model(config, data.num_classes, size, aux)
    log = common.logger(verbose)
    common.announce(log, config.base, config.weights, data, size, strategy, config.distribute)
    log(
        f"transferkit: training every layer, schedule {schedule.name} (lr {schedule.lr}, {schedule.decay} decay, "
        f"batch {schedule.batch_size}, {schedule.epochs} epochs){', with auxiliary classifiers' if aux else ''}"
    )
    outputs = len(getattr(model, "loss_weights_of_outputs", (1.0,)))
    steps = max(1, math.ceil(data.count("train") / schedule.batch_size))
    training = schedules.make_training(
        schedule, steps, "val_predictions_accuracy" if outputs > 1 else "val_accuracy",
        soft_labels=data.soft_labels, ema=config.ema,
    )
    compile_for_training(model, training, config.run_eagerly)
    progress = common.progress(out_dir, settings, config.resume, chief, strategy)
    if progress.done:
        log(f"transferkit: resuming an interrupted run, its training had finished ({progress.folder})")
        progress.restore(model, 1)
    else:
        if progress.resuming:
            log(f"transferkit: resuming an interrupted run after epoch {len(progress.rows)} ({progress.folder})")
        train_ds, val_ds = data.train, data.val
        if outputs > 1:
            train_ds, val_ds = _repeat_labels(train_ds, outputs), _repeat_labels(val_ds, outputs)
        common.fit(
            model, train_ds, val_ds, data.class_weight if outputs == 1 else None, epochs=schedule.epochs,
            verbose=verbose, callbacks=progress.callbacks(0, "train") + training.callbacks
            + common.tensorboard(progress, config.tensorboard) + list(callbacks),
        )
        progress.finish_step(model, 0)
    final = inference_model(model)
    if final is not model:
        final.compile(loss=training.loss, metrics=["accuracy"], run_eagerly=config.run_eagerly)
    rows = [_rename(row) for row in progress.rows]
    return common.finish(
        final, data, rows, out_dir, settings, "train", strategy, chief, progress,
        metrics={"schedule": dataclasses.asdict(schedule), "params": final.count_params(), "train_params": model.count_params()},
    )
