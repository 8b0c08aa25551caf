"""Fine-tuning runs: load a pretrained base, train a new head on the frozen base, then unfreeze
the top of the base and train on at a lower learning rate; write the run folder."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import keras

from transferkit import transfer
from transferkit.data.options import DataOptions
from transferkit.errors import ConfigError
from transferkit.models import build_model, checked_image_size, get_model_info
from transferkit.runs import common, distribute
from transferkit.runs.folder import RunResult
from transferkit.transfer import freeze

# The pipelines drop undecodable files, so their length is unknown until the first epoch ends.
warnings.filterwarnings("ignore", message="Your input ran out of data")


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run depends on; saved as ``config.json`` to rerun it.

    Attributes:
        base: Registry name of the base model.
        data: Dataset folder (class sub-folders) or ``"sample"``.
        out: Run folder; ``runs/<base>-<time>`` when None.
        weights: ``"imagenet"`` or a weights file for the base (None is refused: training from
            random init is :func:`transferkit.runs.train.train`).
        image_size: Square input side; the weights' (or model's) default when None.
        batch_size: Batch size.
        epochs: Epochs of phase 1 (head only, base frozen).
        fine_tune_epochs: Epochs of phase 2 (top of the base unfrozen); 0 skips it.
        lr: Learning rate of phase 1.
        fine_tune_lr: Learning rate of phase 2; ``lr / 100`` when None (small steps keep the
            pretrained features).
        unfreeze_from: Stage or layer from which the base trains in phase 2, or ``"all"``; the
            last stage if None (and ``unfreeze_last`` is None).
        unfreeze_last: Unfreeze the last N blocks of the base in phase 2 instead.
        gradual: Gradual unfreezing: phase 2 starts with the last stage and unfreezes one more
            stage every ``gradual`` epochs until ``unfreeze_from`` (or ``unfreeze_last``) is
            reached; 0 unfreezes it all at once.
        train_bn: Let unfrozen BatchNormalization layers train (batch statistics, moving averages
            updated). By default every BN layer of the base stays frozen in inference mode.
        lr_mult: Learning-rate multipliers of phase 2: a number for the whole base (``0.1``) or
            ``{stage_or_layer_prefix: multiplier}`` (``{"stage4": 0.1, "stage5": 0.3}``).
        optimizer: ``adam``, ``adamw``, ``sgd`` (momentum 0.9) or ``rmsprop``.
        mixed_precision: ``"mixed_float16"`` or ``"mixed_bfloat16"``; None trains in float32.
            The final softmax stays float32.
        channels: 3 (RGB) or 1: train on grey images, with the first convolution of 3-channel
            weights adapted by summing its RGB kernels; the model's default when None.
        val_split: Fraction of every class held out for validation.
        seed: Seed of the split, shuffling, augmentation and initialisation.
        dropout: Dropout before the new ``predictions`` layer.
        augment: Random flip/rotation/zoom on training images.
        frozen_cache: When training images are not augmented, compute the frozen part of the
            model once per image and train only the rest each epoch (phase 1 then trains the head
            on cached features); exact, and much faster. Used when it fits in half the free memory.
        distribute: ``"mirrored"`` (every GPU of this machine) or ``"multi_worker"`` (this
            machine is one worker of the cluster in ``TF_CONFIG``; the chief writes the run
            folder); None trains on the default device. ``batch_size`` is the global batch.
        overwrite: Replace an existing run folder (only once the new run is complete).
        resume: Carry on an interrupted run with the same settings (False discards its progress).
        data_options: CSV columns, tfds, test split, augmentation, class weights, cache.
    """

    base: str = "mobilenet_v1_025"
    data: str = "sample"
    out: str | None = None
    weights: str | None = "imagenet"
    image_size: int | None = None
    batch_size: int = 32
    epochs: int = 10
    fine_tune_epochs: int = 5
    lr: float = 1e-2
    fine_tune_lr: float | None = None
    unfreeze_from: str | None = None
    unfreeze_last: int | None = None
    gradual: int = 0
    train_bn: bool = False
    lr_mult: float | str | dict[str, float] | None = None
    optimizer: str = "adam"
    mixed_precision: str | None = None
    channels: int | None = None
    val_split: float = 0.2
    seed: int = 0
    dropout: float = 0.2
    augment: bool = True
    frozen_cache: bool = True
    distribute: str | None = None
    overwrite: bool = False
    resume: bool = True
    data_options: DataOptions = dataclasses.field(default_factory=DataOptions)


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


def _compile(model: keras.Model, lr: float, optimizer: str = "adam", lr_mult: Any = None) -> None:
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
            verbose=verbose, callbacks=progress.callbacks(step, "head" if start is None else "fine_tune") + list(callbacks),
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
        return (config.lr,)
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
