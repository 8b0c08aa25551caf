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
from transferkit.models import build_model, checked_image_size, drop_path_option, get_model_info
from transferkit.runs import common, distribute
from transferkit.runs.folder import RunResult
from transferkit.transfer import freeze, schedules
from transferkit.transfer.lr_find import Curve, RangeTest
from transferkit.transfer.schedules import classification_loss

SCHEDULES = ("constant", "cosine", "one-cycle")  # --schedule: the learning rate within a phase
PHASES = ("head", "fine_tune")

# The pipelines drop undecodable files, so their length is unknown until the first epoch ends.
warnings.filterwarnings("ignore", message="Your input ran out of data")


def check(config: FinetuneConfig) -> int:
    """Validates everything that can be checked before any data is read or anything written;
    returns the image size."""
    for field in ("epochs", "fine_tune_epochs"):
        if getattr(config, field) < 0:
            raise ConfigError(f"{field} must be 0 or more, got {getattr(config, field)}")
    if config.epochs + config.fine_tune_epochs == 0:
        raise ConfigError("nothing to train: epochs and fine_tune_epochs are both 0")
    for field in ("lr", "fine_tune_lr"):
        value = getattr(config, field)
        if field == "lr" and isinstance(value, str):
            if value != "auto":
                raise ConfigError(f"lr must be a number or 'auto' (a range test picks it), got {value!r}")
        elif value is not None and value <= 0:
            raise ConfigError(f"{field} must be positive, got {value}")
    if config.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {config.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if config.schedule != "constant" and config.gradual:
        raise ConfigError("--schedule follows one phase; with --gradual use the constant schedule (or drop --gradual)")
    if config.early_stopping is not None and config.early_stopping < 1:
        raise ConfigError(f"early_stopping is a patience in epochs, at least 1, got {config.early_stopping}")
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
    transfer.make_optimizer(config.optimizer, ema=config.ema)
    classification_loss(config.label_smoothing)
    drop_path_option(config.base, config.drop_path)
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


def _compile(
    model: keras.Model, config: FinetuneConfig, soft_labels: bool, lr: float, optimizer: str, lr_mult: Any = None
) -> None:
    """With ``config.ema`` the optimizer averages the weights, and ``fit`` leaves the average in them."""
    model.compile(
        optimizer=transfer.make_optimizer(optimizer, lr, lr_mult, ema=config.ema),
        loss=classification_loss(config.label_smoothing, soft_labels),
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
    if config.lr == "auto" and config.distribute == "multi_worker":  # checked before joining the cluster
        raise ConfigError("--lr auto cannot run on a multi-worker cluster (the workers would each pick a rate); give --lr")
    with common.strategy_scope(config.distribute, config.mixed_precision) as strategy:
        return _finetune(config, verbose, strategy, callbacks)


def _finetune(
    config: FinetuneConfig, verbose: int = 1, strategy: Any = None, callbacks: Sequence[keras.callbacks.Callback] = ()
) -> RunResult:
    from transferkit.data import load_data

    chief = distribute.is_chief(strategy)
    size = check(config)
    settings = {**dataclasses.asdict(config), "image_size": size}
    out_dir = common.out_dir(config.out, config.base, settings, chief, config.resume, config.overwrite)
    data = load_data(
        config.data, size, config.batch_size, config.val_split, config.seed, config.augment,
        channels=config.channels or get_model_info(config.base).input_shape[2], **config.data_options.kwargs(),
    )
    keras.utils.set_random_seed(config.seed)
    model = build_model(
        config.base, data.num_classes, config.weights, size, config.channels, dropout=config.dropout,
        **drop_path_option(config.base, config.drop_path),
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
        step_start = sum(e for _, e in steps[:resume_at])  # epochs are numbered as planned, stopped early or not
        if config.early_stopping and resume_at < len(steps) and any(r["epoch"] > step_start for r in progress.rows):
            # Keras' EarlyStopping keeps its best weights and patience count in memory only:
            # carrying on mid-phase would forget the best epoch, so the phase starts again.
            progress.restart_step(resume_at, step_start)
            where = f"at the start of the phase it was in (epoch {step_start + 1}; --early-stopping keeps no checkpoint)"
        log(f"transferkit: resuming an interrupted run, {where} ({progress.folder})")
        progress.restore(model, resume_at)  # the weights after the last finished step
    chosen = {}
    # The frozen layers' outputs of --lr auto's range test, for phase 1 (no digest of the frozen
    # weights without it: nothing to share).
    memo: dict | None = {} if config.lr == "auto" else None
    if config.lr == "auto":
        chosen = progress.remember("lr_auto.json", lambda: _auto_lr(config, data, size, log, memo))
        config = dataclasses.replace(config, lr=chosen["lr"], fine_tune_lr=chosen["fine_tune_lr"])
    steps_per_epoch = -(-data.count("train") // config.batch_size)
    for step, (start, epochs) in enumerate(steps):
        if step < resume_at:
            first_epoch += epochs
            continue
        compile_args = _set_step(model, config, start, log, epochs)
        compile_args = (schedules.decay_schedule(config.schedule, compile_args[0], epochs * steps_per_epoch), *compile_args[1:])
        stopper = _early_stopping(config)
        _fit(
            model, data, config, cache, log, compile_args, initial_epoch=first_epoch, epochs=first_epoch + epochs,
            verbose=verbose, memo=memo, callbacks=progress.callbacks(step, "head" if start is None else "fine_tune")
            + common.tensorboard(progress, config.tensorboard) + stopper + list(callbacks),
        )
        memo = None  # only phase 1 can share the range test's arrays; a later step has its own
        if stopper and stopper[0].stopped_epoch:
            log(
                f"transferkit: early stopping after epoch {stopper[0].stopped_epoch + 1}; kept the weights of epoch "
                f"{stopper[0].best_epoch + 1} (best validation loss {stopper[0].best:.4f})"
            )
        progress.finish_step(model, step)
        first_epoch += epochs
    if resume_at == len(steps):  # nothing trained in this process: set up the model as the last step left it
        _compile(model, config, data.soft_labels, *_set_step(model, config, steps[-1][0]))
    if chosen:
        settings = {**settings, "lr_chosen": chosen["lr"], "fine_tune_lr_chosen": chosen["fine_tune_lr"]}
    return common.finish(
        model, data, progress.rows, out_dir, settings, "finetune", strategy, chief, progress,
        metrics={"lr_auto": chosen} if chosen else None,
    )


def _early_stopping(config: FinetuneConfig) -> list[keras.callbacks.Callback]:
    """Keras' EarlyStopping on the validation loss: on a small validation set the accuracy moves
    in steps of one image and ties for many epochs, while the loss keeps ranking them."""
    if not config.early_stopping:
        return []
    return [keras.callbacks.EarlyStopping("val_loss", patience=config.early_stopping, restore_best_weights=True)]


def _auto_lr(config: FinetuneConfig, data: Any, size: int, log: Any, memo: dict | None = None) -> dict[str, Any]:
    """``--lr auto``: a range test of phase 1 on a throwaway copy of the model; its suggestion is
    phase 1's rate, and phase 2's is a hundredth of it unless ``fine_tune_lr`` is given."""
    log("transferkit: --lr auto, running a learning-rate range test of the head first")
    model = build_model(
        config.base, data.num_classes, config.weights, size, config.channels, dropout=config.dropout,
        **drop_path_option(config.base, config.drop_path),
    )
    curve = range_test(model, data, config, memo=memo)
    chosen = {**curve.summary(), "lr": curve.suggestion, "fine_tune_lr": config.fine_tune_lr or curve.suggestion / 100}
    log(
        f"transferkit: --lr auto chose lr {chosen['lr']:.3g} (valley; steepest descent at {chosen['steepest']:.3g}) "
        f"and fine-tune lr {chosen['fine_tune_lr']:.3g}" + ("" if config.fine_tune_lr else " (lr / 100)")
    )
    return chosen


def range_test(
    model: keras.Model, data: Any, config: FinetuneConfig, phase: str = "head", start_lr: float = 1e-7,
    end_lr: float = 10.0, steps: int = 100, memo: dict | None = None,
) -> Curve:
    """A learning-rate range test of one phase of ``config``'s recipe on ``model`` (which it
    trains: a throwaway model): the head on the frozen base (``phase="head"``), or the part of
    the base phase 2 unfreezes (``"fine_tune"``, after ``config.epochs`` of phase 1 at
    ``config.lr``), with that phase's optimizer. The frozen layers' output
    is cached as :func:`finetune` caches it (kept in ``memo`` for the run's own phase 1).

    Returns:
        The loss curve and its suggestions (:class:`~transferkit.transfer.lr_find.Curve`).
    """
    if phase not in PHASES:
        raise ConfigError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    test = RangeTest(start_lr, end_lr, steps)
    cache = config.frozen_cache and not _augmented(config)
    start = None
    if phase == "fine_tune":
        start = transfer.resolve_unfreeze(model, config.unfreeze_from, config.unfreeze_last)
        if config.epochs:  # phase 2 starts from a trained head, as in finetune
            _fit(
                model, data, config, cache, lambda message: None, _set_step(model, config, None), epochs=config.epochs,
                verbose=0, memo=memo,
            )
    config = dataclasses.replace(config, lr=start_lr, fine_tune_lr=start_lr)  # the test sets the rate of every batch
    # Every epoch holds at least one batch, so `steps` epochs are enough; validation never runs.
    _fit(
        model, data, config, cache, lambda message: None, _set_step(model, config, start), epochs=steps,
        verbose=0, callbacks=[test], validation_freq=steps + 1, memo=memo,
    )
    return test.curve


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
    model: keras.Model, data: Any, config: FinetuneConfig, cache: bool, log: Any, compile_args: tuple,
    memo: dict | None = None, **kwargs: Any,
) -> keras.callbacks.History:
    """``model.fit`` on ``data``, or, with ``cache``, fit of the trained part of ``model`` on the
    cached output of its frozen part (:func:`transferkit.transfer.frozen_prefix`): the same
    training, without recomputing the frozen layers every epoch (nor in a later fit of the same
    run with the same frozen layers: ``memo``)."""
    from transferkit.data import MEMORY_CACHE_SHARE, available_memory
    from transferkit.transfer import features

    _compile(model, config, data.soft_labels, *compile_args)
    target, train, val = model, data.train, data.val
    split = transfer.frozen_prefix(model) if cache else None
    if split is not None:
        prefix, suffix = split
        need = features.prefix_bytes(prefix, data.count("train") + data.count("val"))
        if need > MEMORY_CACHE_SHARE * available_memory():
            log(f"transferkit: not caching the frozen layers' output ({need / 2**30:.1f} GB, over half the free memory)")
        else:
            log(f"transferkit: frozen layers computed once per image ({need / 2**20:.0f} MB cached)")
            train, val = features.cached_prefix_data(prefix, data.train, data.val, config.batch_size, config.seed, memo)
            target = suffix
            _compile(target, config, data.soft_labels, *compile_args)
    return common.fit(target, train, val, data.class_weight, **kwargs)
