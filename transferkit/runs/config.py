"""The settings of every kind of run, as dataclasses saved in a run's ``config.json``: plain data
with no TensorFlow, so the command line builds its flags (and answers ``--help``) from their
defaults without loading TensorFlow. The runs themselves live in :mod:`.finetune`, :mod:`.extract`
and :mod:`.train`."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, TypeVar

from transferkit.data.options import DataOptions
from transferkit.errors import ConfigError

Config = TypeVar("Config")

# `transferkit export` formats and TFLite quantizations (see :mod:`.export`).
EXPORT_FORMATS = ("saved_model", "keras", "tflite", "onnx", "openvino")
EXPORT_QUANTIZE = ("none", "dynamic", "float16", "int8")


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
        lr: Learning rate of phase 1, or ``"auto"``: a learning-rate range test on the head
            (:mod:`transferkit.runs.lr_find`) picks it, and ``fine_tune_lr`` is the pick / 100
            unless given.
        fine_tune_lr: Learning rate of phase 2; ``lr / 100`` when None (small steps keep the
            pretrained features).
        schedule: The learning rate within each phase: ``constant``, ``cosine`` (decays to 0
            over the phase) or ``one-cycle`` (warm-up over 30% of the phase, then cosine to 0).
        early_stopping: Stop a phase once the validation loss has not improved for this many
            epochs, keeping the best epoch's weights; None trains every epoch.
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
        label_smoothing: Label smoothing of the cross-entropy (0: none).
        ema: Keep an exponential moving average of the trained weights with this momentum (e.g.
            0.999) and save it, not the last step's weights; None: off.
        drop_path: Stochastic depth: the largest rate (the last block's; earlier blocks drop
            linearly less) at which a residual block's branch is dropped per example in
            training; 0: off. Only for families with residual blocks.
        augment: Random flip/rotation/zoom on training images.
        frozen_cache: When training images are not augmented, compute the frozen part of the
            model once per image and train only the rest each epoch (phase 1 then trains the head
            on cached features); exact, and much faster. Used when it fits in half the free memory.
        distribute: ``"mirrored"`` (every GPU of this machine) or ``"multi_worker"`` (this
            machine is one worker of the cluster in ``TF_CONFIG``; the chief writes the run
            folder); None trains on the default device. ``batch_size`` is the global batch.
        overwrite: Replace an existing run folder (only once the new run is complete).
        resume: Carry on an interrupted run with the same settings (False discards its progress).
        tensorboard: Write TensorBoard logs while training; they end up in the run folder's
            ``tensorboard/`` (watch them live in the hidden progress folder beside it).
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
    lr: float | str = 1e-2
    fine_tune_lr: float | None = None
    schedule: str = "constant"
    early_stopping: int | None = None
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
    label_smoothing: float = 0.0
    ema: float | None = None
    drop_path: float = 0.0
    augment: bool = True
    frozen_cache: bool = True
    distribute: str | None = None
    overwrite: bool = False
    resume: bool = True
    tensorboard: bool = False
    data_options: DataOptions = dataclasses.field(default_factory=DataOptions)


@dataclass
class LRFindConfig:
    """A learning-rate range test (``transferkit lr-find``); the model, data and phase settings
    are a :class:`FinetuneConfig`'s.

    Attributes:
        start_lr: The first batch's learning rate.
        end_lr: The last batch's learning rate (the rate grows geometrically in between).
        steps: Batches of the test (fewer if the loss diverges first).
        phase: ``head`` (the new head on the frozen base, as phase 1 trains) or ``fine_tune``
            (the part of the base phase 2 unfreezes, after phase 1's epochs).
        out: Folder of the plot and curve; ``runs/<base>-lr-find-<time>`` when None.
        overwrite: Replace an existing ``out``.
    """

    start_lr: float = 1e-7
    end_lr: float = 10.0
    steps: int = 100
    phase: str = "head"
    out: str | None = None
    overwrite: bool = False


@dataclass
class ExtractConfig:
    """A use-as-is run: frozen pretrained base, new head trained on its cached features.

    Attributes:
        base: Registry name of the base.
        data: Dataset (folder, CSV, ``tfds:NAME`` or ``"sample"``).
        out: Run folder; ``runs/<base>-extract-<time>`` when None.
        weights: ``"imagenet"``, None (random init) or a weights file for the base.
        image_size: Square input side; the weights' default when None.
        channels: 3, or 1 to train on grey images (first convolution adapted); the model's
            default when None.
        batch_size: Batch size (of the feature pass and of head training).
        epochs: Epochs of head training.
        lr: Learning rate of the head (Adam).
        dropout: Dropout before ``predictions``.
        hidden_units: Hidden layers of the head.
        pooling: Head pooling; the family's default when None.
        val_split: Fraction of every class held out for validation.
        seed: Seed of the split, shuffling and initialisation.
        augment: Augment training images; features are then recomputed every epoch (no cache).
        feature_cache: ``disk`` (default; reused by later runs and tuner trials), ``memory``
            (this process only) or ``none``.
        feature_cache_dir: Folder of the disk cache (:func:`default_cache_dir` when None).
        overwrite: Replace an existing run folder.
        data_options: CSV columns, tfds, augmentation spec, class weights, image cache.
    """

    base: str = "mobilenet_v1_025"
    data: str = "sample"
    out: str | None = None
    weights: str | None = "imagenet"
    image_size: int | None = None
    channels: int | None = None
    batch_size: int = 32
    epochs: int = 20
    lr: float = 1e-2
    dropout: float = 0.2
    hidden_units: tuple[int, ...] = ()
    pooling: str | None = None
    val_split: float = 0.2
    seed: int = 0
    augment: bool = False
    feature_cache: str = "disk"
    feature_cache_dir: str | None = None
    overwrite: bool = False
    data_options: DataOptions = dataclasses.field(default_factory=DataOptions)


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` to rerun it.

    Attributes:
        base: Registry name of the model; it trains with the classifier its paper trained
            (VGG's FC layers with dropout 0.5, GoogLeNet's auxiliary classifiers, ...).
        data: Dataset (folder, CSV, ``tfds:NAME``, ``"digits"`` or ``"sample"``).
        out: Run folder; ``runs/<base>-<time>`` when None.
        weights: None (random init), or a weights file (or tag) to start from.
        image_size: Square input side; the model's default when None.
        channels: 3 (RGB) or 1 (grey); the model's default when None.
        schedule: Training preset (:data:`transferkit.transfer.schedules.SCHEDULES`).
        epochs, batch_size, lr, weight_decay, momentum, nesterov, label_smoothing, warmup_epochs:
            Overrides of the preset (None: the preset's).
        aux: Train with the model's auxiliary classifiers (None: when it has them); they are
            dropped from the saved model and the exports.
        dropout: Dropout of the head (None: the paper's).
        hidden_units: Hidden FC layers of the head (None: the paper's).
        ema: Keep an exponential moving average of the weights with this momentum and save it
            (None: off).
        drop_path: Stochastic depth rate of the last residual block (0: off); see FinetuneConfig.
        model_options: Builder arguments of the family (``{"plain": True}``, ``{"block_order":
            "full_preact"}``, ``{"block_dropout": 0.3}``).
        val_split: Fraction of every class held out for validation.
        seed: Seed of the split, shuffling, augmentation and initialisation.
        run_eagerly: Keras runs each step eagerly instead of tracing a graph: slower per step,
            but for a few steps of a deep net (a smoke run) tracing costs more than training.
        mixed_precision: ``"mixed_float16"`` or ``"mixed_bfloat16"``; None trains in float32.
        distribute: ``"mirrored"`` or ``"multi_worker"``; None trains on the default device.
        overwrite: Replace an existing run folder (only once the new run is complete).
        resume: Carry on an interrupted run with the same settings (False discards its progress).
        tensorboard: Write TensorBoard logs while training; they end up in the run folder's
            ``tensorboard/`` (watch them live in the hidden progress folder beside it).
        data_options: CSV columns, tfds, augmentation (``augment_spec``, e.g. ``"cifar"``; no
            augmentation unless given), training fraction, class weights, cache.
    """

    base: str = "resnet20"
    data: str = "digits"
    out: str | None = None
    weights: str | None = None
    image_size: int | None = None
    channels: int | None = None
    schedule: str = "cosine"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    label_smoothing: float | None = None
    warmup_epochs: float | None = None
    aux: bool | None = None
    dropout: float | None = None
    hidden_units: tuple[int, ...] | None = None
    ema: float | None = None
    drop_path: float = 0.0
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    val_split: float = 0.2
    seed: int = 0
    run_eagerly: bool = False
    mixed_precision: str | None = None
    distribute: str | None = None
    overwrite: bool = False
    resume: bool = True
    tensorboard: bool = False
    data_options: DataOptions = dataclasses.field(default_factory=DataOptions)


def make_config(cls: type[Config], config: Config | None = None, **options: Any) -> Config:
    """A run config from keywords: fields of ``cls`` and of its ``data_options`` by name, over
    ``config`` (or the defaults).

    Raises:
        ConfigError: an unknown keyword, named with the closest valid one.
    """
    own = {f.name for f in dataclasses.fields(cls)} - {"data_options"}  # type: ignore[arg-type]
    data = {f.name for f in dataclasses.fields(DataOptions)}
    for key in options:
        if key not in own and key not in data:
            close = difflib.get_close_matches(key, sorted(own | data), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(sorted(own | data))}"
            raise ConfigError(f"unknown option {key!r} for {cls.__name__}; {hint}")
    base = config if config is not None else cls()
    data_options = getattr(base, "data_options", None)
    if data_options is not None:
        data_options = dataclasses.replace(data_options, **{k: v for k, v in options.items() if k in data})
        options = {**{k: v for k, v in options.items() if k in own}, "data_options": data_options}
    return dataclasses.replace(base, **options)  # type: ignore[type-var]
