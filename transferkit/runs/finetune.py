"""Fine-tuning runs: load a pretrained base, train a new head on the frozen base, then unfreeze
the top of the base and train on at a lower learning rate; write the run folder."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import keras

from transferkit import transfer
from transferkit.runs.config import FinetuneConfig
from transferkit.errors import ConfigError
from transferkit.models import build_model, checked_image_size, get_model_info
from transferkit.runs import common, distribute
from transferkit.runs.folder import RunResult
from transferkit.transfer import freeze

# The pipelines drop undecodable files, so their length is unknown until the first epoch ends.
warnings.filterwarnings("ignore", message="Your input ran out of data")


def _check(config: FinetuneConfig) -> int:
    """Validates everything that can be checked before any data is read or anything written;
    returns the image size."""
    for field in ("epochs", "fine_tune_epochs"):
        if getattr(config, field) < 0:
            raise ConfigError(f"{field} must be 0 or more, got {getattr(config, field)}")
    if config.epochs + config.fine_tune_epochs == 0:
        raise ConfigError("nothing to train: epochs and fine_tune_epochs are both 0")
    for field in ("lr", "fine_tune_lr"):
        value = getattr(config, field)
        if value is not None and value <= 0:
            raise ConfigError(f"{field} must be positive, got {value}")
    if config.unfreeze_last is not None and config.unfreeze_from is not None:
        raise ConfigError("give either --unfreeze-from or --unfreeze-last, not both")
    if config.unfreeze_last is not None and config.unfreeze_last < 1:
        raise ConfigError(f"unfreeze_last must be at least 1, got {config.unfreeze_last}")
    if config.gradual < 0:
        raise ConfigError(f"gradual must be 0 (off) or a number of epochs, got {config.gradual}")
    if config.weights is None:
        raise ConfigError(
            "finetune needs pretrained weights (a frozen random base learns nothing); to train "
            f"{config.base} from random init use `transferkit train --base {config.base}`"
        )
    transfer.parse_lr_mult(config.lr_mult)
    transfer.make_optimizer(config.optimizer)
    transfer.check_precision(config.mixed_precision)
    info = get_model_info(config.base)
    size = checked_image_size(info.name, config.weights, config.image_size)
    if config.unfreeze_from not in (None, "all") and config.fine_tune_epochs:
        stages = info.stages
        if stages and config.unfreeze_from not in stages and "_" not in config.unfreeze_from:
            raise ConfigError(
                f"{info.name} has no stage {config.unfreeze_from!r}; stages: {', '.join(stages)}"
            )
    return size


def _compile(model: keras.Model, lr: float, optimizer: str, lr_mult: Any = None) -> None:
    model.compile(
        optimizer=transfer.make_optimizer(optimizer, lr, lr_mult),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def finetune(config: FinetuneConfig, verbose: int = 1, callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunResult:
    """Runs the two-phase fine-tuning recipe and writes the run folder.

    Phase 1 trains the new head with the whole base frozen; phase 2 unfreezes the base from
    ``unfreeze_from`` (default: its last stage) and trains on at ``fine_tune_lr``. Frozen
    BatchNormalization layers stay in inference mode throughout.

    An interrupted run resumes where it stopped when it is started again with the same settings
    (see :mod:`transferkit.runs.resume`).

    Args:
        config: The run's settings.
        verbose: 0 for silence, 1 for Keras progress bars and transferkit's log lines.
        callbacks: More Keras callbacks for every ``fit`` (TensorBoard, early stopping, ...).

    Returns:
        The run folder, final validation accuracy, trained model, class names and history.
    """
    with common.strategy_scope(config.distribute, config.mixed_precision) as strategy:
        return _finetune(config, verbose, strategy, callbacks)


def _finetune(
    config: FinetuneConfig, verbose: int = 1, strategy: Any = None, callbacks: Sequence[keras.callbacks.Callback] = ()
) -> RunResult:
    from transferkit.data import load_data

    chief = distribute.is_chief(strategy)
    size = _check(config)
    settings = {**dataclasses.asdict(config), "image_size": size}
    out_dir = common.out_dir(config.out, config.base, settings, chief, config.resume, config.overwrite)
    data = load_data(
        config.data, size, config.batch_size, config.val_split, config.seed, config.augment,
        channels=config.channels or get_model_info(config.base).input_shape[2], **config.data_options.kwargs(),
    )
    keras.utils.set_random_seed(config.seed)
    model = build_model(
        config.base, data.num_classes, config.weights, size, config.channels, dropout=config.dropout
    )
    log = common.logger(verbose)
    common.announce(log, config.base, config.weights, data, size, strategy, config.distribute)
    cache = config.frozen_cache and not _augmented(config)
    progress = common.progress(out_dir, settings, config.resume, chief, strategy)
    target = transfer.resolve_unfreeze(model, config.unfreeze_from, config.unfreeze_last)
    steps = [(None, config.epochs)] if config.epochs else []
    steps += transfer.unfreeze_schedule(model, target, config.fine_tune_epochs, config.gradual)
    first_epoch, resume_at = 0, progress.done
    if progress.resuming:
        where = "its training had finished" if resume_at == len(steps) else f"after epoch {len(progress.rows)}"
        log(f"transferkit: resuming an interrupted run, {where} ({progress.folder})")
        progress.restore(model, resume_at)  # the weights after the last finished step
    for step, (start, epochs) in enumerate(steps):
        if step < resume_at:
            first_epoch += epochs
            continue
        compile_args = _set_step(model, config, start, log, epochs)
        _fit(
            model, data, config, cache, log, compile_args, initial_epoch=first_epoch, epochs=first_epoch + epochs,
            verbose=verbose, callbacks=progress.callbacks(step, "head" if start is None else "fine_tune")
            + common.tensorboard(progress, config.tensorboard) + list(callbacks),
        )
        progress.finish_step(model, step)
        first_epoch += epochs
    if resume_at == len(steps):  # nothing trained in this process: set up the model as the last step left it
        _compile(model, *_set_step(model, config, steps[-1][0]))
    return common.finish(model, data, progress.rows, out_dir, settings, "finetune", strategy, chief, progress)


def _set_step(model: keras.Model, config: FinetuneConfig, start: str | None, log: Any = None, epochs: int = 0) -> tuple:
    """Freezes ``model`` for a step (phase 1 when ``start`` is None, else phase 2 from ``start``)
    and returns the step's compile arguments."""
    if start is None:
        if log:
            log("transferkit: phase 1, training the new head on the frozen base")
        freeze(model)
        return (config.lr, config.optimizer)
    if log:
        bn = "trainable" if config.train_bn else "frozen in inference mode"
        log(f"transferkit: phase 2, fine-tuning the base from {start} for {epochs} epochs (BatchNormalization {bn})")
    freeze(model, trainable_from=start, train_bn=config.train_bn)
    return (config.fine_tune_lr or config.lr / 100, config.optimizer, config.lr_mult)


def _augmented(config: FinetuneConfig) -> bool:
    from transferkit.data import pipeline

    spec = config.data_options.augment_spec or pipeline.DEFAULT_AUGMENT
    return config.augment and bool(pipeline.parse_augment(spec))


def _fit(
    model: keras.Model, data: Any, config: FinetuneConfig, cache: bool, log: Any, compile_args: tuple, **kwargs: Any
) -> keras.callbacks.History:
    """``model.fit`` on ``data``, or, with ``cache``, fit of the trained part of ``model`` on the
    cached output of its frozen part (:func:`transferkit.transfer.frozen_prefix`): the same
    training, without recomputing the frozen layers every epoch."""
    from transferkit.data import MEMORY_CACHE_SHARE, available_memory
    from transferkit.transfer import features

    _compile(model, *compile_args)
    target, train, val = model, data.train, data.val
    split = transfer.frozen_prefix(model) if cache else None
    if split is not None:
        prefix, suffix = split
        need = features.prefix_bytes(prefix, data.count("train") + data.count("val"))
        if need > MEMORY_CACHE_SHARE * available_memory():
            log(f"transferkit: not caching the frozen layers' output ({need / 2**30:.1f} GB, over half the free memory)")
        else:
            log(f"transferkit: frozen layers computed once per image ({need / 2**20:.0f} MB cached)")
            train, val = features.cached_prefix_data(prefix, data.train, data.val, config.batch_size, config.seed)
            target = suffix
            _compile(target, *compile_args)
    return common.fit(target, train, val, data.class_weight, **kwargs)
