"""Prediction: image paths from files, folders and CSVs, and class probabilities of a model on
them, decoded exactly as training decodes (:func:`transferkit.data.pipeline.decode_files`)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import ConfigError, DataError

TTA_MODES = ("flip", "crops")
"""Test-time augmentation: ``flip`` averages the image and its mirror; ``crops`` the ten-crop of
Krizhevsky et al. 2012 (the four corner and the centre crops of the image decoded 8/7 as large,
each with its mirror)."""
CROP_SCALE = 8 / 7  # 256 px decoded for 224 px crops, the classic ratio


def main_output(out: Any) -> Any:
    """A classifier's class scores from a model call: its first output for models with auxiliary
    outputs (GoogLeNet while training), the output itself otherwise."""
    return out[0] if isinstance(out, (list, tuple)) else out


def output_width(model: Any) -> int:
    """Number of classes of a classifier (its first output, for models with auxiliary outputs)."""
    shape = model.output_shape
    return (shape[0] if isinstance(shape, list) else shape)[-1]


def collect_images(inputs: list[str], path_column: str = "path") -> list[str]:
    """Image paths from files, folders (recursive) and CSVs, in the order given."""
    from transferkit.data.folder import is_image_name

    files: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            files += sorted(str(p) for p in path.rglob("*") if p.is_file() and is_image_name(p.name))
        elif path.suffix.lower() in (".csv", ".tsv") and path.is_file():
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
            if rows and path_column not in rows[0]:
                raise DataError(f"{path} has no column {path_column!r}; pass --path-column")
            files += [str((path.parent / r[path_column]).resolve()) for r in rows]
        elif path.is_file():
            files.append(str(path))
        else:
            raise DataError(f"{item!r} is neither an image, a folder nor a CSV")
    if not files:
        raise DataError(f"no images found in {', '.join(inputs)}")
    return files


# The last model traced, with its traced function: a second predict_files call on the same model
# (a benchmark, a notebook loop) does not trace it again, as Keras' own predict does not. One
# slot, so at most one model is kept alive by it.
_LAST_TRACED: list[tuple[Any, Any, Any]] = []  # (model, (tta, size), its traced step)


def check_tta(tta: str | None) -> str | None:
    """``tta`` if it names a test-time augmentation (:data:`TTA_MODES`), None for none."""
    if tta in (None, "", "none"):
        return None
    if tta not in TTA_MODES:
        raise ConfigError(f"unknown test-time augmentation {tta!r}; choose {' or '.join(TTA_MODES)}")
    return tta


def tta_caveat(model: Any, tta: str | None) -> str | None:
    """Why test-time augmentation may not suit ``model``, or None. Grey (1-channel) models are
    taken to read digits, letters or other symbols, whose mirror images are other symbols."""
    if check_tta(tta) is not None and model.input_shape[-1] == 1:
        return (
            f"{tta} test-time augmentation mirrors the images, but this model reads grey images (digits, "
            "text?), where a mirror image may be another symbol; compare the scores without it"
        )
    return None


def tta_views(images: Any, tta: str | None, size: int) -> list[Any]:
    """The views of a batch of square images that :func:`predict_files` averages over: the batch
    itself without ``tta``; with ``flip`` also its mirror; with ``crops`` (images decoded
    ``CROP_SCALE`` as large) the four corner and the centre ``size`` crops and their mirrors."""
    import tensorflow as tf

    if tta is None:
        return [images]
    if tta == "flip":
        return [images, tf.reverse(images, [2])]
    side = images.shape[1]
    starts = ((0, 0), (0, side - size), (side - size, 0), (side - size, side - size), ((side - size) // 2,) * 2)
    crops = [images[:, y : y + size, x : x + size, :] for y, x in starts]
    return crops + [tf.reverse(c, [2]) for c in crops]


def _predict_step(model: Any, tta: str | None, size: int) -> Any:
    """One batch from a decoded-files iterator to mean probabilities over its views, traced once
    for a model: the batch never leaves the graph (as in ``model.predict``), which keeps up
    with the decoding better than a Python loop handing each batch over.
    Returns ``(more, indices, probabilities)``; ``more`` is False once the iterator is done."""
    import tensorflow as tf

    width = output_width(model)

    def probabilities(index: Any, images: Any) -> tuple[Any, Any, Any]:
        views = []
        for view in tta_views(tf.cast(images, tf.float32), tta, size):
            out = model(view, training=False)
            views.append(tf.cast(main_output(out), tf.float32))
        return tf.constant(True), index, tf.reduce_mean(tf.stack(views), axis=0)

    def done() -> tuple[Any, Any, Any]:
        return tf.constant(False), tf.zeros([0], tf.int32), tf.zeros([0, width], tf.float32)

    @tf.function(autograph=False)
    def step(iterator: Any) -> tuple[Any, Any, Any]:
        item = iterator.get_next_as_optional()
        return tf.cond(item.has_value(), lambda: probabilities(*item.get_value()), done)

    return step


def predict_files(
    model: Any, files: list[str], batch_size: int = 32, tta: str | None = None
) -> tuple[np.ndarray, list[int]]:
    """Probabilities for image files (decoded like training images), and the indices that
    decoded; files that cannot be decoded are left out. With ``tta`` (:data:`TTA_MODES`), each
    image's probabilities are the mean over its views (:func:`tta_views`)."""
    from transferkit.data import pipeline

    tta = check_tta(tta)
    size, channels = model.input_shape[1], model.input_shape[-1]
    decode_size = int(round(size * CROP_SCALE)) if tta == "crops" else size
    decoded = pipeline.decode_files(files, decode_size, channels, batch_size=batch_size)
    if not _LAST_TRACED or _LAST_TRACED[0][0] is not model or _LAST_TRACED[0][1] != (tta, size):
        _LAST_TRACED[:] = [(model, (tta, size), _predict_step(model, tta, size))]
    step = _LAST_TRACED[0][2]
    probs, done = [], []
    iterator = iter(decoded.prefetch(2))
    while True:
        more, index, batch = step(iterator)
        if not more:
            break
        probs.append(batch.numpy())
        done += index.numpy().tolist()
    return (np.concatenate(probs) if probs else np.zeros((0, output_width(model)), np.float32)), done
