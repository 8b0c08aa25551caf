"""Evaluation: which images to score (never a run's training images), and the scores of a
trained classifier over all of its classes, or of the unchanged ImageNet classifier through a
class map."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transferkit.errors import ConfigError, DataError


@dataclass
class Images:
    """Labelled images to score.

    Attributes:
        files: Image paths.
        labels: Class index of each file, into ``class_names``.
        class_names: The data's classes.
        excluded: Images left out because the model trained on them.
        source: What was scored, for the log (``"the run's val split"``, a data path).
    """

    files: list[str]
    labels: list[int]
    class_names: list[str]
    excluded: int = 0
    source: str = ""


def select_images(data: str | None, manifest: Any = None, **columns: Any) -> Images:
    """The images to score: ``data`` (a folder, CSV or ``sample``) less the run's training images,
    or, without ``data``, the run's held-out split from its manifest (``split.csv``).

    Raises:
        ConfigError: neither given, or nothing left to score.
    """
    from transferkit.data import index_source

    if data is None:
        if manifest is None:
            raise ConfigError("pass --data, or --model a run folder (its split.csv names the held-out images)")
        held_out = manifest.held_out_split()
        files, labels = manifest.subset(held_out)
        images = Images(list(files), list(labels), list(manifest.class_names), source=f"the run's {held_out} split")
    else:
        index = index_source(data, **columns)
        images = Images(list(index.files), list(index.labels), list(index.class_names), source=str(data))
        if manifest is not None:
            trained = {os.path.abspath(f) for f in manifest.subset("train")[0]}
            keep = [i for i, f in enumerate(images.files) if os.path.abspath(f) not in trained]
            images.excluded = len(images.files) - len(keep)
            images.files = [images.files[i] for i in keep]
            images.labels = [images.labels[i] for i in keep]
    if not images.files:
        raise ConfigError("no images left to score: every image of --data was a training image of this run")
    return images


@dataclass
class Scores:
    """A classifier's scores on labelled images.

    Attributes:
        truth: True class of each scored image, into ``class_names``.
        scores: ``(images, classes)`` scores, columns in ``class_names`` order.
        class_names: The classes predictions choose among: all of a trained model's classes, or
            the mapped classes of the unchanged classifier.
        files: The scored files (those that decoded).
        skipped: Files that could not be decoded.
        metrics: Accuracy, counts and per-class accuracy.
    """

    truth: np.ndarray
    scores: np.ndarray
    class_names: list[str]
    files: list[str]
    skipped: int
    metrics: dict[str, Any] = field(default_factory=dict)


def score(
    model: Any,
    model_classes: Sequence[str] | None,
    images: Images,
    class_map: Any = None,
    batch_size: int = 32,
    tta: str | None = None,
) -> Scores:
    """Scores ``model`` on ``images``; with ``tta`` (``flip`` or ``crops``, see
    :func:`~transferkit.inference.predict.predict_files`) also with test-time augmentation, as
    ``metrics["tta_accuracy"]`` beside the plain ``accuracy`` (the scores stay the plain ones).

    A trained model (``model_classes`` its labels) chooses among all of its classes, so a
    prediction of a class the data lacks counts as wrong. The unchanged ImageNet classifier
    (``model_classes`` None) needs ``class_map``: each data class scores the summed probability of
    its ImageNet classes.

    Raises:
        ConfigError: data classes the model does not have (all named), or no usable class map
            for the unchanged classifier (see :func:`check_class_map`); both before predicting.
        DataError: no image could be decoded.
    """
    from transferkit.inference import imagenet
    from transferkit.inference.predict import check_tta, predict_files

    tta = check_tta(tta)
    mapping = check_class_map(class_map, images) if model_classes is None else None
    if model_classes is not None:
        unknown = [c for c in images.class_names if c not in model_classes and c in _present(images)]
        if unknown:
            raise ConfigError(
                f"the data has classes the model was not trained on: {', '.join(map(repr, unknown))}; "
                f"its classes: {', '.join(model_classes)}"
            )
    probs, done = predict_files(model, images.files, batch_size)
    if not done:
        raise DataError(f"none of the {len(images.files)} images of {images.source} can be decoded; run `transferkit doctor`")
    truth = np.asarray(images.labels, np.int64)[done]
    names = list(images.class_names) if mapping is not None else list(model_classes)  # type: ignore[arg-type]

    def in_classes(probs: np.ndarray) -> np.ndarray:
        return imagenet.mapped_predictions(probs, mapping, names) if mapping is not None else probs

    if mapping is None:
        position = {c: names.index(c) for c in images.class_names if c in names}
        truth = np.asarray([position[images.class_names[t]] for t in truth], np.int64)
    scores = in_classes(probs)
    predicted = scores.argmax(axis=1)
    metrics: dict[str, Any] = {
        "accuracy": float((predicted == truth).mean()),
        "num_images": int(len(truth)),
        "skipped": len(images.files) - len(done),
        "excluded_training_images": images.excluded,
        "per_class_accuracy": {
            c: float((predicted[truth == k] == k).mean())
            for k, c in enumerate(names)
            if (truth == k).any()
        },
    }
    if tta is not None:
        augmented, again = predict_files(model, images.files, batch_size, tta)
        row = {i: j for j, i in enumerate(again)}
        if any(i not in row for i in done):
            raise DataError(f"some images of {images.source} decode only without test-time augmentation; run `transferkit doctor`")
        tta_scores = in_classes(augmented[[row[i] for i in done]])
        metrics["tta"] = tta
        metrics["tta_accuracy"] = float((tta_scores.argmax(axis=1) == truth).mean())
    return Scores(truth, scores, names, [images.files[i] for i in done], len(images.files) - len(done), metrics)


def check_class_map(class_map: Any, images: Images) -> dict[str, list[int]]:
    """The unchanged classifier's class map (:func:`transferkit.inference.imagenet.parse_class_map`),
    checked to name every class of ``images``; cheap, so callers check it before loading a model.

    Raises:
        ConfigError: no map, a map that cannot be parsed, or one that leaves out a class.
    """
    from transferkit.inference import imagenet

    if not class_map:
        raise ConfigError(
            "the unchanged classifier predicts ImageNet classes; pass --map to say which stand for "
            f"your classes (e.g. --map {','.join(f'{c}={c}' for c in images.class_names)}), or --model a trained run"
        )
    mapping = imagenet.parse_class_map(class_map)
    missing = [c for c in images.class_names if c not in mapping]
    if missing:
        raise ConfigError(
            f"the class map has no entry for {', '.join(map(repr, missing))}; map every class of the "
            f"data, e.g. --map {','.join(f'{c}=<imagenet name>' for c in images.class_names)}"
        )
    return mapping


def _present(images: Images) -> set[str]:
    return {images.class_names[t] for t in set(images.labels)}
