"""Fine-tuning runs: load a pretrained base, train a new head on the frozen base, then unfreeze
the top of the base and train on at a lower learning rate; write the run folder."""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from transferkit import registry, runs

# The pipelines drop undecodable files, so their length is unknown until the first epoch ends.
warnings.filterwarnings("ignore", message="Your input ran out of data")
from transferkit.errors import ConfigError
from transferkit.transfer import freeze, stage_names


@dataclass
class FinetuneConfig:
    """Everything a fine-tuning run depends on; saved as ``config.json`` to rerun it.

    Attributes:
        base: Registry name of the base model.
        data: Dataset folder (class sub-folders) or ``"sample"``.
        out: Run folder; ``runs/<base>-<time>`` when None.
        weights: ``"imagenet"``, None (random init) or a weights file for the base.
        image_size: Square input side; the weights' (or model's) default when None.
        batch_size: Batch size.
        epochs: Epochs of phase 1 (head only, base frozen).
        fine_tune_epochs: Epochs of phase 2 (top of the base unfrozen); 0 skips it.
        lr: Learning rate of phase 1.
        fine_tune_lr: Learning rate of phase 2; ``lr / 100`` when None (small steps keep the
            pretrained features).
        unfreeze_from: Stage or layer from which the base trains in phase 2; last stage if None.
        val_split: Fraction of every class held out for validation.
        seed: Seed of the split, shuffling, augmentation and initialisation.
        dropout: Dropout before the new ``predictions`` layer.
        augment: Random flip/rotation/zoom on training images.
        overwrite: Replace an existing run folder (only once the new run is complete).
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
    val_split: float = 0.2
    seed: int = 0
    dropout: float = 0.2
    augment: bool = True
    overwrite: bool = False


@dataclass
class RunResult:
    """What a run produced."""

    out: Path
    val_accuracy: float
    model: keras.Model
    class_names: tuple[str, ...]
    history: list[dict[str, Any]]


def default_image_size(base: str, weights: str | None) -> int:
    from transferkit import weights as weights_lib

    info = registry.get_model_info(base)
    if weights_lib.is_tag(weights):
        return weights_lib.get_record(info.name, weights).input_size  # type: ignore[arg-type]
    return info.input_shape[0]


def _check(config: FinetuneConfig) -> tuple[Path, int]:
    """Validates everything that can be checked before any data is read or anything written."""
    for field in ("epochs", "fine_tune_epochs"):
        if getattr(config, field) < 0:
            raise ConfigError(f"{field} must be 0 or more, got {getattr(config, field)}")
    if config.epochs + config.fine_tune_epochs == 0:
        raise ConfigError("nothing to train: epochs and fine_tune_epochs are both 0")
    for field in ("lr", "fine_tune_lr"):
        value = getattr(config, field)
        if value is not None and value <= 0:
            raise ConfigError(f"{field} must be positive, got {value}")
    out = config.out or f"runs/{config.base}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = runs.check_out_dir(out, config.overwrite)
    info = registry.get_model_info(config.base)
    size = config.image_size or default_image_size(info.name, config.weights)
    registry._input_shape(info, (size, size, 3), info.input_shape)
    if config.unfreeze_from not in (None, "all") and config.fine_tune_epochs:
        stages = info.stages
        if stages and config.unfreeze_from not in stages and "_" not in config.unfreeze_from:
            raise ConfigError(
                f"{info.name} has no stage {config.unfreeze_from!r}; stages: {', '.join(stages)}"
            )
    return out_dir, size


def _compile(model: keras.Model, lr: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def _rows(history: keras.callbacks.History, phase: str, first_epoch: int) -> list[dict[str, Any]]:
    metrics = history.history
    n = len(next(iter(metrics.values()), []))
    return [
        {"epoch": first_epoch + i + 1, "phase": phase, **{k: float(v[i]) for k, v in metrics.items()}}
        for i in range(n)
    ]


def finetune(config: FinetuneConfig, verbose: int = 1) -> RunResult:
    """Runs the two-phase fine-tuning recipe and writes the run folder.

    Phase 1 trains the new head with the whole base frozen; phase 2 unfreezes the base from
    ``unfreeze_from`` (default: its last stage) and trains on at ``fine_tune_lr``. Frozen
    BatchNormalization layers stay in inference mode throughout.

    Returns:
        The run folder, final validation accuracy, trained model, class names and history.
    """
    from transferkit.data import load_data
    from transferkit.export import export_saved_model

    out_dir, size = _check(config)
    data = load_data(
        config.data, size, config.batch_size, config.val_split, config.seed, config.augment
    )
    keras.utils.set_random_seed(config.seed)
    model = registry.create_model(
        config.base,
        num_classes=data.num_classes,
        weights=config.weights,
        input_shape=(size, size, 3),
        dropout=config.dropout,
    )
    log = (lambda msg: print(msg, file=sys.stderr)) if verbose else (lambda msg: None)
    log(
        f"transferkit: {config.base} ({config.weights or 'random init'}) on {data.count('train')} "
        f"training / {data.count('val')} validation images, {data.num_classes} classes, {size}px"
    )
    if data.skipped:
        log(f"transferkit: skipped {len(data.skipped)} files that are not images (see skipped.txt)")
    rows: list[dict[str, Any]] = []
    if config.epochs:
        log("transferkit: phase 1, training the new head on the frozen base")
        freeze(model)
        _compile(model, config.lr)
        h = model.fit(
            data.train, validation_data=data.val, epochs=config.epochs, verbose=verbose, shuffle=False
        )
        rows += _rows(h, "head", 0)
    if config.fine_tune_epochs:
        start = config.unfreeze_from or (stage_names(model) or ["all"])[-1]
        log(f"transferkit: phase 2, fine-tuning the base from {start}")
        freeze(model, trainable_from=start)
        _compile(model, config.fine_tune_lr or config.lr / 100)
        h = model.fit(
            data.train,
            validation_data=data.val,
            initial_epoch=len(rows),
            epochs=len(rows) + config.fine_tune_epochs,
            verbose=verbose,
            shuffle=False,
        )
        rows += _rows(h, "fine_tune", len(rows))
    val_loss, val_accuracy = model.evaluate(data.val, verbose=0)
    with runs.run_folder(out_dir) as tmp:
        model.save(tmp / "model.keras")
        export_saved_model(model, tmp / "saved_model")
        runs.write_labels(tmp / "labels.txt", data.class_names)
        runs.write_history(tmp / "history.csv", rows)
        runs.write_json(
            tmp / "metrics.json",
            {
                "val_accuracy": float(val_accuracy),
                "val_loss": float(val_loss),
                "num_train": data.count("train"),
                "num_val": data.count("val"),
                "epochs": rows,
            },
        )
        runs.write_json(
            tmp / "config.json",
            {
                **dataclasses.asdict(config),
                "out": str(out_dir),
                "image_size": size,
                "class_names": list(data.class_names),
                "transferkit_version": _version(),
            },
        )
        data.write_manifest(tmp / "split.csv")
        if data.skipped:
            (tmp / "skipped.txt").write_text("".join(f"{p}\t{why}\n" for p, why in data.skipped))
    return RunResult(out_dir, float(val_accuracy), model, data.class_names, rows)


def _version() -> str:
    from transferkit import __version__

    return __version__
