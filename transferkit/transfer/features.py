"""Frozen layers computed once: the features of a frozen base (use as-is), cached in memory or on
disk, and the output of a fine-tuned model's frozen prefix.

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

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from transferkit.data.options import feature_cache_dir
from transferkit.errors import ConfigError

FEATURE_CACHES = ("disk", "memory", "none")
_VERSION = 2  # bump when decoding or the key changes, so old cache files are not reused
_MEMORY: dict[str, dict[bytes, np.ndarray]] = {}


def default_cache_dir() -> Path:
    """``$TRANSFERKIT_CACHE/features``, else ``~/.cache/transferkit/features``."""
    return feature_cache_dir()


def file_digest(path: str | os.PathLike[str]) -> bytes:
    """A 16-byte blake2b digest of a file's contents."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def weights_identity(base: str, weights: str | None, seed: int) -> str:
    """What makes two bases with the same architecture compute the same features."""
    from transferkit.models import weights as weights_lib
    from transferkit.models.registry import get_model_info

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
    from transferkit.data.progress import ProgressBar

    digests = [file_digest(f) for f in files]
    missing = [i for i, d in enumerate(digests) if d not in store.table]
    if missing:
        decoded = pipeline.decode_files([files[i] for i in missing], image_size, channels, batch_size=batch_size)
        run = feature_fn(extractor)
        with ProgressBar(len(missing), "features") as bar:
            for index, images in decoded.prefetch(2):
                out = np.asarray(run(tf.cast(images, tf.float32)), dtype=np.float32)
                for j, row in zip(index.numpy().tolist(), out):
                    store.table[digests[missing[j]]] = row
                bar.add(len(out))
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


def dataset_features(extractor: keras.Model, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every batch of an (unaugmented) ``(images, labels)`` dataset
    (images with the extractor's channels: ``load_data(channels=...)``)."""
    run = feature_fn(extractor)
    feats, labels = [], []
    for images, y in dataset:
        feats.append(np.asarray(run(images), np.float32).reshape(len(y), -1))
        labels.append(np.asarray(y))
    return np.concatenate(feats), np.concatenate(labels)


@dataclass
class DataFeatures:
    """A frozen extractor's features of a dataset's training and validation images.

    Attributes:
        train, val: ``(features, labels)``, one row per usable image.
        computed: Images the extractor ran over; the rest were read back from the store.
        cached: Images read back from the store.
        undecodable: Files left out because they could not be decoded.
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    computed: int
    cached: int = 0
    undecodable: tuple[str, ...] = ()


def data_features(
    extractor: keras.Model, data: Any, store: FeatureStore, batch_size: int = 32, channels: int = 3
) -> DataFeatures:
    """Features of the training and validation images of a :class:`~transferkit.data.DataBundle`.

    Image files go through :func:`file_features` (only files ``store`` lacks are computed, the
    rest read back); a tensorflow-datasets source has no files to key on, so its ``train`` and
    ``val`` pipelines (which must not be augmented) are run once and kept in memory only.
    """
    from transferkit.data.tfds_source import is_tfds

    if data.files and not is_tfds(data.files[0]):
        used = [i for i, s in enumerate(data.splits) if s in ("train", "val")]
        files = [data.files[i] for i in used]
        size = int(extractor.input_shape[1])
        feats, ok, computed = file_features(extractor, files, size, store, batch_size, channels)
        labels = np.asarray([data.labels[i] for i in used], np.int32)
        splits = np.asarray([data.splits[i] for i in used])
        train, val = ((feats[(splits == s) & ok], labels[(splits == s) & ok]) for s in ("train", "val"))
        bad = tuple(f for f, good in zip(files, ok) if not good)
        return DataFeatures(train, val, computed, int(ok.sum()) - computed, bad)
    train = dataset_features(extractor, data.train)
    val = dataset_features(extractor, data.val)
    return DataFeatures(train, val, len(train[1]) + len(val[1]))


def feature_datasets(
    features: DataFeatures, batch_size: int, seed: int = 0
) -> tuple[Any, Any]:
    """``(train, val)`` tf.data datasets of cached features: training reshuffled every epoch
    (seeded), both batched."""
    import tensorflow as tf

    from transferkit.data import pipeline

    x, y = features.train
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    val = tf.data.Dataset.from_tensor_slices(features.val)
    return pipeline.fixed_parallelism(train.batch(batch_size)), pipeline.fixed_parallelism(val.batch(max(batch_size, 256)))


# --- Frozen-prefix cache for fine-tuning ----------------------------------------------------------


def prefix_bytes(prefix: keras.Model, n_images: int) -> int:
    """Memory the outputs of ``prefix`` take for ``n_images`` images."""
    return n_images * sum(
        int(np.prod(t.shape[1:])) * np.dtype(keras.backend.standardize_dtype(t.dtype)).itemsize
        for t in prefix.outputs
    )


def prefix_fingerprint(prefix: keras.Model) -> str:
    """What the outputs of a frozen ``prefix`` depend on besides its input: its weights (and
    their shapes) and its outputs' shapes and dtypes. Two builds of the same base with the same
    pretrained weights give the same fingerprint whatever their layers are named."""
    digest = hashlib.blake2b(digest_size=16)
    for weight in prefix.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{value.shape}{value.dtype}".encode())
        digest.update(value.tobytes())
    for t in prefix.outputs:
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
    return digest.hexdigest()


def prefix_outputs(prefix: keras.Model, *datasets: Any) -> list[tuple[Any, np.ndarray] | None]:
    """For each dataset of ``(images, labels)`` batches, ``(outputs of prefix, labels)`` as arrays
    (a tuple of arrays for a prefix with several outputs); None for a dataset that is None or
    has no batches. ``prefix`` is traced once for all of them."""
    run = feature_fn(prefix)

    def computed(batches: Any) -> tuple[Any, np.ndarray] | None:
        outs: list[list[np.ndarray]] = [[] for _ in prefix.outputs]
        labels = []
        for images, y in batches:
            result = run(images)
            for store, value in zip(outs, result if isinstance(result, (list, tuple)) else [result]):
                store.append(np.asarray(value))
            labels.append(np.asarray(y))
        if not labels:
            return None
        arrays = tuple(np.concatenate(o) for o in outs)
        return (arrays if len(arrays) > 1 else arrays[0]), np.concatenate(labels)

    return [None if batches is None else computed(batches) for batches in datasets]


def cached_prefix_data(
    prefix: keras.Model, train: Any, val: Any, batch_size: int, seed: int = 0, memo: dict | None = None
) -> tuple[Any, Any]:
    """``train`` and ``val`` with their images replaced by the outputs of the frozen ``prefix``
    (see :func:`transferkit.transfer.frozen_prefix`), computed in one pass and kept in memory.

    ``train`` must not be augmented: its images must be the same every epoch. The returned
    training data is reshuffled every epoch (seeded) and batched like the original.

    ``memo``, a dict the caller keeps for one run, holds the computed outputs under the prefix's
    :func:`prefix_fingerprint` and the identity of ``train`` and ``val``: a later call with the
    same frozen layers on the same data (``--lr auto``'s range test, then phase 1, each on its own
    build of the model) computes nothing again.
    """
    import tensorflow as tf

    from transferkit.data import pipeline

    def dataset(arrays: tuple[Any, np.ndarray] | None, shuffle: bool) -> Any:
        if arrays is None:
            return None
        ds = tf.data.Dataset.from_tensor_slices(arrays)
        if shuffle:
            ds = ds.shuffle(len(arrays[1]), seed=seed, reshuffle_each_iteration=True)
        return pipeline.fixed_parallelism(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))

    if memo is None:
        train_arrays, val_arrays = prefix_outputs(prefix, train, val)
    else:
        key = (prefix_fingerprint(prefix), id(train), id(val))
        if key not in memo:
            memo[key] = prefix_outputs(prefix, train, val)
        train_arrays, val_arrays = memo[key]
    return dataset(train_arrays, True), dataset(val_arrays, False)
