"""Prediction: image paths from files, folders and CSVs, and class probabilities of a model on
them, decoded exactly as training decodes (:func:`transferkit.data.pipeline.decode_files`)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import DataError


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
_LAST_TRACED: list[tuple[Any, Any]] = []


def predict_files(model: Any, files: list[str], batch_size: int = 32) -> tuple[np.ndarray, list[int]]:
    """Probabilities for image files (decoded like training images), and the indices that
    decoded; files that cannot be decoded are left out."""
    import tensorflow as tf

    from transferkit.data import pipeline
    from transferkit.transfer.features import feature_fn

    size, channels = model.input_shape[1], model.input_shape[-1]
    decoded = pipeline.decode_files(files, size, channels, batch_size=batch_size)
    if not _LAST_TRACED or _LAST_TRACED[0][0] is not model:
        _LAST_TRACED[:] = [(model, feature_fn(model))]
    run = _LAST_TRACED[0][1]
    probs, done = [], []
    for index, images in decoded.prefetch(2):
        out = run(tf.cast(images, tf.float32))
        probs.append(np.asarray(out[0] if isinstance(out, (list, tuple)) else out, np.float32))
        done += index.numpy().tolist()
    return (np.concatenate(probs) if probs else np.zeros((0, output_width(model)), np.float32)), done
