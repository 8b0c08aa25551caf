"""Pretrained weights: one frozen record per (model, tag), resolved through Keras' own cache.

Resolution order for a record: the copy bundled inside the package (hash checked), then
``keras.utils.get_file`` under ``$KERAS_HOME/models`` (a cached file loads with no network), then
a download. If none works the error names the file, the URL and the folder to put it in: a model
never silently keeps random weights when pretrained ones were asked for.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from transferkit.errors import WeightsError

ASSETS = Path(__file__).parent / "assets" / "weights"


@dataclass(frozen=True)
class PretrainedWeights:
    """Metadata of one published weights file for one registered model.

    Attributes:
        model: Registry name the file fits.
        tag: Name users pass as ``weights=``, e.g. ``"imagenet"``.
        file_name: File name in the Keras cache (``$KERAS_HOME/models``).
        url: Where Keras publishes it.
        file_hash: sha256 (64 hex digits) or md5 (32), as ``keras.utils.get_file`` checks; None if
            the publisher gives none.
        input_size: Resolution the weights were trained at.
        preprocessing: :class:`~transferkit.layers.Preprocess` mode they expect.
        num_classes: Classes of the published top, or None for a headless (no-top) file.
        licence: Licence of the weights.
        paper: Paper that introduced the weights.
        bundled: True when the file ships in ``transferkit/assets/weights``.
        sha256: sha256 of the file, checked for bundled copies.
    """

    model: str
    tag: str
    file_name: str
    url: str
    file_hash: str | None
    input_size: int
    preprocessing: str
    num_classes: int | None
    licence: str
    paper: str
    bundled: bool = False
    sha256: str | None = None


_RECORDS: dict[tuple[str, str], PretrainedWeights] = {}


def register_weights(record: PretrainedWeights) -> PretrainedWeights:
    """Adds a pretrained weights record (called by the family modules)."""
    key = (record.model, record.tag)
    if key in _RECORDS:
        raise RuntimeError(f"weights {key} registered twice")
    _RECORDS[key] = record
    return record


def is_tag(weights: Any) -> bool:
    """True when ``weights`` names a pretrained set (a short word, not a path)."""
    return isinstance(weights, str) and weights.isidentifier() and not Path(weights).suffix


def pretrained_tags(model: str) -> list[str]:
    """Tags with a record for ``model``."""
    return sorted(tag for (name, tag) in _RECORDS if name == model)


def get_record(model: str, tag: str) -> PretrainedWeights:
    """The record for ``model`` and ``tag``.

    Raises:
        WeightsError: no such record; the message lists the models that have ``tag`` weights.
    """
    from transferkit.registry import _ensure_registered

    _ensure_registered()
    record = _RECORDS.get((model, tag))
    if record is None:
        having: dict[str, list[str]] = {}
        for name, t in sorted(_RECORDS):
            having.setdefault(name, []).append(t)
        listed = ", ".join(f"{name} ({'/'.join(tags)})" for name, tags in having.items())
        raise WeightsError(
            f"no {tag!r} weights are published for {model}; models with published weights: "
            f"{listed}. Train from scratch with weights=None, or pass a weights file path "
            "(.keras, .weights.h5 or .h5)"
        )
    return record


def keras_cache_dir() -> Path:
    """``$KERAS_HOME`` (read now, not at Keras import) or ``~/.keras``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_file(record: PretrainedWeights) -> Path:
    """Local path of a record's file: bundled copy, Keras cache, or a fresh download."""
    if record.bundled:
        path = ASSETS / record.file_name
        if path.is_file() and (record.sha256 is None or sha256_of(path) == record.sha256):
            return path
    cache = keras_cache_dir()
    try:
        return Path(
            keras.utils.get_file(
                record.file_name,
                record.url,
                cache_subdir="models",
                file_hash=record.file_hash,
                cache_dir=str(cache),
            )
        )
    except Exception as err:  # noqa: BLE001 - any download failure ends the same way
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(
            f"cannot load {record.tag} weights for {record.model}: {record.file_name} is not in "
            f"{cache / 'models'} and downloading {record.url} failed ({reason}). Download that "
            f"file on a machine with internet access and copy it into {cache / 'models'}, or pass "
            "a local weights file path"
        ) from None


def load_pretrained(model: keras.Model, record: PretrainedWeights) -> None:
    """Loads a record's file into ``model`` (a backbone built for it)."""
    path = resolve_file(record)
    try:
        model.load_weights(str(path))
    except ValueError as err:
        raise WeightsError(
            f"{path} does not fit {model.name}: {str(err).splitlines()[0]}"
        ) from None


def load_weights_file(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Loads a user's weights file: ``.keras`` (by layer name), ``.weights.h5`` or legacy ``.h5``.

    Raises:
        WeightsError: missing file, unknown format, or a layer whose weights do not fit.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(
            f"weights file {str(p)!r} does not exist; pass an existing .keras, .weights.h5 or .h5 "
            "file, or a pretrained tag such as 'imagenet'"
        )
    if p.suffix == ".keras":
        source = keras.saving.load_model(p, compile=False)
        _copy_by_name(source, model, p)
        return
    if p.suffix not in (".h5", ".hdf5"):
        raise WeightsError(
            f"weights file {str(p)!r} has an unknown format; use .keras, .weights.h5 or .h5"
        )
    try:
        model.load_weights(str(p))
    except ValueError as err:
        first = _first_mismatch_hint(str(err))
        raise WeightsError(f"{p} does not fit {model.name}: {first}") from None


def _first_mismatch_hint(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "layer structure differs"


def _copy_by_name(source: keras.Model, target: keras.Model, path: Path) -> None:
    """Copies weights layer by layer; the first layer that does not fit is named in the error."""
    src = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        other = src.get(layer.name)
        if other is None:
            raise WeightsError(
                f"{path} does not fit {target.name}: it has no layer {layer.name!r}"
            )
        mine = [tuple(w.shape) for w in layer.weights]
        theirs = [tuple(w.shape) for w in other.weights]
        if mine != theirs:
            raise WeightsError(
                f"{path} does not fit {target.name}: layer {layer.name!r} has weights of shapes "
                f"{theirs} in the file but {mine} in the model"
            )
        layer.set_weights(other.get_weights())


def copy_weights_by_order(source: keras.Model, target: keras.Model, skip: tuple[str, ...] = ()) -> None:
    """Copies the weights of ``source`` into ``target``, weighted layer by weighted layer in order.

    This is how an independent implementation (``keras.applications``) and ours are shown to be
    the same network: same weighted layers, same order, same shapes.

    Args:
        source: The model to copy from.
        target: The model to copy into.
        skip: Layer classes (by name) of ``source`` to leave out, e.g. ``("Normalization",)``.

    Raises:
        WeightsError: different numbers of weighted layers, or the first pair whose shapes differ.
    """
    src = [l for l in source.layers if l.weights and type(l).__name__ not in skip]
    dst = [l for l in target.layers if l.weights]
    if len(src) != len(dst):
        raise WeightsError(
            f"{source.name} has {len(src)} weighted layers, {target.name} has {len(dst)}"
        )
    for a, b in zip(src, dst):
        shapes_a = [tuple(w.shape) for w in a.weights]
        shapes_b = [tuple(w.shape) for w in b.weights]
        if shapes_a != shapes_b:
            raise WeightsError(
                f"layer {a.name!r} of {source.name} has weights {shapes_a}, but layer {b.name!r} "
                f"of {target.name} has {shapes_b}"
            )
        b.set_weights(a.get_weights())
