"""Use as-is with a new head: the ``extract`` run trains a head on the frozen base's cached
features (:mod:`transferkit.transfer.features`) and writes the run folder."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

import keras

from transferkit.runs.config import ExtractConfig
from transferkit.errors import ConfigError
from transferkit.runs.folder import check_out_dir, default_out, history_rows, write_run
from transferkit.transfer.schedules import classification_loss
from transferkit.transfer.features import (
    FEATURE_CACHES,
    FeatureStore,
    data_features,
    extractor_key,
    feature_datasets,
    weights_identity,
)


@dataclass
class ExtractResult:
    """What :func:`train_extract` produced."""

    model: keras.Model
    val_accuracy: float
    val_loss: float
    history: list[dict[str, Any]]
    data: Any
    computed: int
    cached: int


def train_extract(config: ExtractConfig, verbose: int = 1) -> ExtractResult:
    """Trains a new head on the frozen base; returns the stitched image-in model (no files written).

    Raises:
        ConfigError, DataError, WeightsError: as one-line user errors.
    """
    from transferkit.data import load_data
    from transferkit.models import build_model, checked_image_size, get_model_info
    from transferkit.transfer import freeze, split_head

    if config.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {config.epochs}")
    if config.lr <= 0:
        raise ConfigError(f"lr must be positive, got {config.lr}")
    if config.feature_cache not in FEATURE_CACHES:
        raise ConfigError(f"feature cache must be one of {', '.join(FEATURE_CACHES)}, got {config.feature_cache!r}")
    size = checked_image_size(config.base, config.weights, config.image_size)
    log = (lambda msg: print(msg, file=sys.stderr)) if verbose else (lambda msg: None)
    from transferkit.data.tfds_source import is_tfds

    # From files, only the split is needed up front: images are decoded only for features
    # missing from the cache, so the decoded-image cache of load_data is skipped.
    from_files = not is_tfds(config.data) and not config.augment
    options = config.data_options.kwargs()
    if from_files:
        options["cache"] = "none"
    channels = config.channels or get_model_info(config.base).input_shape[2]
    data = load_data(
        config.data, size, config.batch_size, config.val_split, config.seed, config.augment,
        channels=channels, **options,
    )
    keras.utils.set_random_seed(config.seed)
    head_args: dict[str, Any] = {"dropout": config.dropout, "hidden_units": tuple(config.hidden_units)}
    if config.pooling:
        head_args["pooling"] = config.pooling
    model = build_model(config.base, data.num_classes, config.weights, size, config.channels, **head_args)
    freeze(model)
    extractor, head = split_head(model)
    log(
        f"transferkit: extract, {config.base} ({config.weights or 'random init'}) frozen, new head on "
        f"{data.count('train')} training / {data.count('val')} validation images, {data.num_classes} classes, {size}px"
    )
    compile_args = {"loss": classification_loss(soft_labels=data.soft_labels), "metrics": ["accuracy"]}
    if config.augment:
        log(
            "transferkit: augmentation is on, so every epoch sees new pixels and the base's features "
            "cannot be cached: they are recomputed each epoch (slower; pass --no-augment to cache them)"
        )
        model.compile(optimizer=keras.optimizers.Adam(config.lr), **compile_args)
        h = model.fit(data.train, validation_data=data.val, epochs=config.epochs, verbose=verbose,
                      class_weight=data.class_weight, shuffle=False)
        val_loss, val_acc = model.evaluate(data.val, verbose=0)
        return ExtractResult(model, float(val_acc), float(val_loss), history_rows(h, "head", 0), data, 0, 0)

    store = FeatureStore(
        extractor_key(extractor, weights_identity(config.base, config.weights, config.seed)),
        config.feature_cache, config.feature_cache_dir,
    )
    feats = data_features(extractor, data, store, config.batch_size, channels)
    if feats.undecodable:
        log(f"transferkit: skipped {len(feats.undecodable)} files that cannot be decoded (e.g. {feats.undecodable[0]})")
    computed, cached = feats.computed, feats.cached
    if from_files:
        where = {"disk": f"on disk ({store.path})", "memory": "in memory", "none": "nowhere (--feature-cache none)"}[config.feature_cache]
        log(f"transferkit: features of {computed} images computed, {cached} read from the cache; cached {where}")
    else:
        log(f"transferkit: features of {computed} images computed (kept in memory for this run)")
    for split, part in (("train", feats.train), ("val", feats.val)):
        if not len(part[1]):
            raise ConfigError(f"no {split} image left after decoding; check the data with `transferkit doctor`")
    train_ds, val_ds = feature_datasets(feats, config.batch_size, config.seed)
    head.compile(optimizer=keras.optimizers.Adam(config.lr), **compile_args)
    h = head.fit(train_ds, validation_data=val_ds, epochs=config.epochs, verbose=verbose, class_weight=data.class_weight)
    val_loss, val_acc = head.evaluate(val_ds, verbose=0)
    model.compile(optimizer=keras.optimizers.Adam(config.lr), **compile_args)
    return ExtractResult(model, float(val_acc), float(val_loss), history_rows(h, "head", 0), data, computed, cached)


def extract(config: ExtractConfig, verbose: int = 1) -> Any:
    """Runs use-as-is with a new head (:func:`train_extract`) and writes the run folder.

    The saved model is one image-in, probabilities-out model: the frozen base with the trained
    head, exactly what ``finetune`` saves, so ``predict``, ``evaluate`` and serving treat them alike.

    Returns:
        A :class:`transferkit.runs.folder.RunResult`.
    """
    out_dir = check_out_dir(config.out or default_out(config.base, "extract"), config.overwrite)
    result = train_extract(config, verbose)
    size = result.model.input_shape[1]
    return write_run(
        out_dir, result.model, result.data, result.history, result.val_accuracy, result.val_loss,
        {**dataclasses.asdict(config), "mode": "extract", "image_size": size,
         "features_computed": result.computed, "features_cached": result.cached},
    )
