"""Use as-is with a new head: the frozen base's features, computed once and cached, and the
``extract`` run that trains a head on them.

The base never trains in this mode, so its output for an image never changes: it is computed
once per image and kept in memory, or on disk keyed by the extractor (model, overrides, image
size, pooling, preprocessing), the weights (tag and file hash, or the user file's sha256) and
each image file's contents. A second run, and every tuner trial, reads the features back and
trains only the head, which costs about as much as one pass of the base over the data did.

With augmentation on, every epoch sees different pixels, so features cannot be cached: the head
then trains on the frozen base over augmented images (the Keras guide's slower variant), and the
log says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from transferkit.data.options import DataOptions
from transferkit.errors import ConfigError

FEATURE_CACHES = ("disk", "memory", "none")
_VERSION = 1  # bump when decoding or the key changes, so old cache files are not reused
_MEMORY: dict[str, dict[bytes, np.ndarray]] = {}


def default_cache_dir() -> Path:
    """``$TRANSFERKIT_CACHE/features``, else ``~/.cache/transferkit/features``."""
    root = os.environ.get("TRANSFERKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transferkit"
    return Path(root).expanduser() / "features"


def file_digest(path: str | os.PathLike[str]) -> bytes:
    """A 16-byte blake2b digest of a file's contents."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def weights_identity(base: str, weights: str | None, seed: int) -> str:
    """What makes two bases with the same architecture compute the same features."""
    from transferkit import weights as weights_lib
    from transferkit.registry import get_model_info

    if weights is None:
        return f"random-init-seed{seed}"
    if weights_lib.is_tag(weights):
        r = weights_lib.get_record(get_model_info(base).name, weights)
        return f"{r.tag}:{r.file_name}:{r.file_hash or r.sha256 or r.url}"
    return "file:" + weights_lib.sha256_of(Path(weights))


def extractor_key(extractor: keras.Model, weights_id: str) -> str:
    """Cache key of an extractor: its architecture config (which includes the input size,
    pooling and preprocessing) and its weights."""
    config = json.dumps(extractor.get_config(), sort_keys=True, default=str)
    h = hashlib.blake2b(digest_size=12)
    for part in (str(_VERSION), config, weights_id):
        h.update(part.encode())
    return f"{extractor.name}-{h.hexdigest()}"


class FeatureStore:
    """Features by image-content digest for one extractor: in memory, and optionally on disk as
    one ``<key>.npz`` file (rewritten atomically, so parallel tuner trials never read half a file)."""

    def __init__(self, key: str, mode: str = "disk", folder: str | os.PathLike[str] | None = None) -> None:
        if mode not in FEATURE_CACHES:
            raise ConfigError(f"feature cache must be one of {', '.join(FEATURE_CACHES)}, got {mode!r}")
        self.key, self.mode = key, mode
        self.path = Path(folder or default_cache_dir()) / f"{key}.npz" if mode == "disk" else None
        self.table: dict[bytes, np.ndarray] = dict(_MEMORY.get(key, {})) if mode != "none" else {}
        if self.path is not None and self.path.is_file():
            try:
                with np.load(self.path) as saved:
                    self.table.update(zip(saved["digests"].tolist(), saved["features"]))
            except (OSError, ValueError, KeyError):
                pass  # an unreadable cache file is recomputed and replaced

    def save(self) -> None:
        if self.mode == "none" or not self.table:
            return
        _MEMORY[self.key] = dict(self.table)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        digests = list(self.table)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".npz.partial")
        os.close(fd)
        with open(tmp, "wb") as f:
            np.savez(f, digests=np.array(digests, dtype="S16"), features=np.stack([self.table[d] for d in digests]))
        os.replace(tmp, self.path)


def feature_fn(model: keras.Model) -> Any:
    """``model`` in inference mode as one traced function for any batch size (traced once)."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def file_features(
    extractor: keras.Model,
    files: list[str],
    image_size: int,
    store: FeatureStore,
    batch_size: int = 32,
    channels: int = 3,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Features of image files, computing only those not in ``store``.

    Returns:
        ``(features, ok, computed)``: one row per file (zeros where ``ok`` is False: a file that
        could not be decoded), and how many were computed rather than read back.
    """
    import tensorflow as tf

    from transferkit.data import pipeline
    from transferkit.data.probe import probe_files

    digests = [file_digest(f) for f in files]
    missing = [i for i, d in enumerate(digests) if d not in store.table]
    if missing:
        probes = probe_files([files[i] for i in missing])
        decoded = pipeline.decoded_dataset(
            [files[i] for i in missing], [0] * len(missing), image_size,
            [p.format_code for p in probes], [p.orientation for p in probes], cache=None,
        )
        run = feature_fn(extractor)
        for index, images, _ in decoded.batch(batch_size).prefetch(2):
            images = tf.cast(images, tf.float32)
            if channels == 1:
                images = tf.image.rgb_to_grayscale(images)
            out = np.asarray(run(images), dtype=np.float32)
            for j, row in zip(index.numpy().tolist(), out):
                store.table[digests[missing[j]]] = row
        store.save()
    width = int(np.prod(extractor.output.shape[1:]))
    features = np.zeros((len(files), width), np.float32)
    ok = np.zeros(len(files), bool)
    for i, d in enumerate(digests):
        row = store.table.get(d)
        if row is not None:
            features[i] = row.reshape(-1)
            ok[i] = True
    return features, ok, len(missing)


def dataset_features(extractor: keras.Model, dataset: Any, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every batch of an (unaugmented) ``(images, labels)`` dataset."""
    import tensorflow as tf

    run = feature_fn(extractor)
    feats, labels = [], []
    for images, y in dataset:
        if channels == 1:
            images = tf.image.rgb_to_grayscale(images)
        feats.append(np.asarray(run(images), np.float32).reshape(len(y), -1))
        labels.append(np.asarray(y))
    return np.concatenate(feats), np.concatenate(labels)


# --- Frozen-prefix cache for fine-tuning ----------------------------------------------------------


def prefix_bytes(prefix: keras.Model, n_images: int) -> int:
    """Memory the outputs of ``prefix`` take for ``n_images`` images."""
    return n_images * sum(
        int(np.prod(t.shape[1:])) * np.dtype(keras.backend.standardize_dtype(t.dtype)).itemsize
        for t in prefix.outputs
    )


def cached_prefix_data(
    prefix: keras.Model, train: Any, val: Any, batch_size: int, seed: int = 0
) -> tuple[Any, Any]:
    """``train`` and ``val`` with their images replaced by the outputs of the frozen ``prefix``
    (see :func:`transferkit.transfer.frozen_prefix`), computed in one pass and kept in memory.

    ``train`` must not be augmented: its images must be the same every epoch. The returned
    training data is reshuffled every epoch (seeded) and batched like the original.
    """
    import tensorflow as tf

    run = feature_fn(prefix)

    def computed(dataset: Any) -> tuple[Any, np.ndarray] | None:
        outs: list[list[np.ndarray]] = [[] for _ in prefix.outputs]
        labels = []
        for images, y in dataset:
            result = run(images)
            for store, value in zip(outs, result if isinstance(result, (list, tuple)) else [result]):
                store.append(np.asarray(value))
            labels.append(np.asarray(y))
        if not labels:
            return None
        arrays = tuple(np.concatenate(o) for o in outs)
        return (arrays if len(arrays) > 1 else arrays[0]), np.concatenate(labels)

    def dataset(arrays: tuple[Any, np.ndarray] | None, shuffle: bool) -> Any:
        if arrays is None:
            return None
        ds = tf.data.Dataset.from_tensor_slices(arrays)
        if shuffle:
            ds = ds.shuffle(len(arrays[1]), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    return dataset(computed(train), True), dataset(None if val is None else computed(val), False)


# --- The extract run ----------------------------------------------------------------------------


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
    import tensorflow as tf

    from transferkit import train
    from transferkit.data import load_data
    from transferkit.transfer import build_model, freeze, split_head

    if config.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {config.epochs}")
    if config.lr <= 0:
        raise ConfigError(f"lr must be positive, got {config.lr}")
    if config.feature_cache not in FEATURE_CACHES:
        raise ConfigError(f"feature cache must be one of {', '.join(FEATURE_CACHES)}, got {config.feature_cache!r}")
    size = train.checked_image_size(config.base, config.weights, config.image_size)
    log = (lambda msg: print(msg, file=sys.stderr)) if verbose else (lambda msg: None)
    from transferkit.data.tfds_source import is_tfds

    # From files, only the split is needed up front: images are decoded only for features
    # missing from the cache, so the decoded-image cache of load_data is skipped.
    from_files = not is_tfds(config.data) and not config.augment
    options = config.data_options.kwargs()
    if from_files:
        options["cache"] = "none"
    data = load_data(
        config.data, size, config.batch_size, config.val_split, config.seed, config.augment, **options
    )
    keras.utils.set_random_seed(config.seed)
    head_args: dict[str, Any] = {"dropout": config.dropout, "hidden_units": tuple(config.hidden_units)}
    if config.pooling:
        head_args["pooling"] = config.pooling
    model = build_model(config.base, data.num_classes, config.weights, size, config.channels, **head_args)
    freeze(model)
    extractor, head = split_head(model)
    channels = model.input_shape[-1]
    log(
        f"transferkit: extract, {config.base} ({config.weights or 'random init'}) frozen, new head on "
        f"{data.count('train')} training / {data.count('val')} validation images, {data.num_classes} classes, {size}px"
    )
    compile_args = {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    if config.augment:
        log(
            "transferkit: augmentation is on, so every epoch sees new pixels and the base's features "
            "cannot be cached: they are recomputed each epoch (slower; pass --no-augment to cache them)"
        )
        if channels == 1:
            data = train._grey(data)
        model.compile(optimizer=keras.optimizers.Adam(config.lr), **compile_args)
        h = model.fit(data.train, validation_data=data.val, epochs=config.epochs, verbose=verbose,
                      class_weight=data.class_weight, shuffle=False)
        val_loss, val_acc = model.evaluate(data.val, verbose=0)
        return ExtractResult(model, float(val_acc), float(val_loss), train.history_rows(h, "head", 0), data, 0, 0)

    if from_files:
        store = FeatureStore(
            extractor_key(extractor, weights_identity(config.base, config.weights, config.seed)),
            config.feature_cache, config.feature_cache_dir,
        )
        feats, ok, computed = file_features(extractor, list(data.files), size, store, config.batch_size, channels)
        labels = np.asarray(data.labels, np.int32)
        splits = np.asarray(data.splits)
        if not ok.all():
            bad = [f for f, good in zip(data.files, ok) if not good]
            log(f"transferkit: skipped {len(bad)} files that cannot be decoded (e.g. {bad[0]})")
        parts = {s: (feats[(splits == s) & ok], labels[(splits == s) & ok]) for s in ("train", "val")}
        cached = int(ok.sum()) - computed
        where = {"disk": f"on disk ({store.path})", "memory": "in memory", "none": "nowhere (--feature-cache none)"}[config.feature_cache]
        log(f"transferkit: features of {computed} images computed, {cached} read from the cache; cached {where}")
    else:
        parts = {"train": dataset_features(extractor, data.train, channels),
                 "val": dataset_features(extractor, data.val, channels)}
        computed, cached = sum(len(p[1]) for p in parts.values()), 0
        log(f"transferkit: features of {computed} images computed (kept in memory for this run)")
    for split in ("train", "val"):
        if not len(parts[split][1]):
            raise ConfigError(f"no {split} image left after decoding; check the data with `transferkit doctor`")
    x_train, y_train = parts["train"]
    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(y_train), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
    )
    val_ds = tf.data.Dataset.from_tensor_slices(parts["val"]).batch(max(config.batch_size, 256))
    head.compile(optimizer=keras.optimizers.Adam(config.lr), **compile_args)
    h = head.fit(train_ds, validation_data=val_ds, epochs=config.epochs, verbose=verbose, class_weight=data.class_weight)
    val_loss, val_acc = head.evaluate(val_ds, verbose=0)
    model.compile(optimizer=keras.optimizers.Adam(config.lr), **compile_args)
    return ExtractResult(model, float(val_acc), float(val_loss), train.history_rows(h, "head", 0), data, computed, cached)


def extract(config: ExtractConfig, verbose: int = 1) -> Any:
    """Runs use-as-is with a new head (:func:`train_extract`) and writes the run folder.

    The saved model is one image-in, probabilities-out model: the frozen base with the trained
    head, exactly what ``finetune`` saves, so ``predict``, ``evaluate`` and serving treat them alike.

    Returns:
        A :class:`transferkit.train.RunResult`.
    """
    from transferkit import runs, train

    out_dir = runs.check_out_dir(config.out or train.default_out(config.base, "extract"), config.overwrite)
    result = train_extract(config, verbose)
    size = result.model.input_shape[1]
    return train.write_run(
        out_dir, result.model, result.data, result.history, result.val_accuracy, result.val_loss,
        {**dataclasses.asdict(config), "mode": "extract", "image_size": size,
         "features_computed": result.computed, "features_cached": result.cached},
    )
