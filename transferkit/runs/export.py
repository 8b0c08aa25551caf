"""Artifacts that serve without transferkit: a TensorFlow SavedModel with a ``serving_default``
signature (raw 0-255 RGB float32 images in, class probabilities out)."""

from __future__ import annotations

import os

import keras


def export_saved_model(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Writes ``model`` as a SavedModel at ``path``.

    The preprocessing layer is part of the graph, so a server feeds raw pixels; dropout and
    augmentation are traced in inference mode.
    """
    model.export(str(path), format="tf_saved_model", verbose=False)
