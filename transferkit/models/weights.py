"""Pretrained weights: one frozen record per (model, tag), resolved through Keras' own cache.

Resolution order for a record: the copy bundled inside the package (hash checked), then
``keras.utils.get_file`` under ``$KERAS_HOME/models`` (a cached file loads with no network), then
a download. If none works the error names the file, the URL and the folder to put it in: a model
never silently keeps random weights when pretrained ones were asked for.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from transferkit.errors import WeightsError

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "weights"

# md5 hashes keras.applications checks for the include_top files (keras/src/applications/*.py).
# MobileNet v1 files are published without one.
TOP_HASHES = {
    "resnet50_weights_tf_dim_ordering_tf_kernels.h5": "2cb95161c43110f7111970584f804107",
    "resnet101_weights_tf_dim_ordering_tf_kernels.h5": "f1aeb4b969a6efcfb50fad2f0c20cfc5",
    "resnet152_weights_tf_dim_ordering_tf_kernels.h5": "100835be76be38e30d865e96f2aaae62",
    "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5": "3ef43a0b657b3be2300d5770ece849e0",
    "resnet101v2_weights_tf_dim_ordering_tf_kernels.h5": "6343647c601c52e1368623803854d971",
    "resnet152v2_weights_tf_dim_ordering_tf_kernels.h5": "a49b44d1979771252814e80f8ec446f9",
    "vgg16_weights_tf_dim_ordering_tf_kernels.h5": "64373286793e3c8b2b4e3219cbf3544b",
    "vgg19_weights_tf_dim_ordering_tf_kernels.h5": "cbe5617147190e668d6c5d5026f83318",
    "densenet121_weights_tf_dim_ordering_tf_kernels.h5": "9d60b8095a5708f2dcce2bca79d332c7",
    "densenet169_weights_tf_dim_ordering_tf_kernels.h5": "d699b8f76981ab1b30698df4c175e90b",
    "densenet201_weights_tf_dim_ordering_tf_kernels.h5": "1ceb130c1ea1b78c3bf6114dbdfd8807",
    "inception_v3_weights_tf_dim_ordering_tf_kernels.h5": "9a0d58056eeedaa3f26cb7ebd46da564",
    "efficientnetb0.h5": "902e53a9f72be733fc0bcb005b3ebbac",
    "efficientnetb1.h5": "1d254153d4ab51201f1646940f018540",
    "efficientnetb2.h5": "b15cce36ff4dcbd00b6dd88e7857a6ad",
    "efficientnetb3.h5": "ffd1fdc53d0ce67064dc6a9c7960ede0",
    "efficientnetb4.h5": "18c95ad55216b8f92d7e70b3a046e2fc",
    "efficientnetb5.h5": "ace28f2a6363774853a83a0b21b9421a",
    "efficientnetb6.h5": "165f6e37dce68623721b423839de8be5",
    "efficientnetb7.h5": "8c03f828fec3ef71311cd463b6759d99",
}
_NO_TOP_SUFFIXES = ("_no_top.h5", "_notop.h5")


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
        preprocessing: :class:`~transferkit.models.layers.Preprocess` mode they expect.
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


# --- The published classifier tops --------------------------------------------------------------


def top_record(model: str, tag: str = "imagenet") -> Any:
    """The record of the ``include_top`` file published beside a headless ``tag`` record.

    Raises:
        WeightsError: no ``tag`` weights for ``model``, or no published top for them.
    """
    record = get_record(model, tag)
    suffix = next((s for s in _NO_TOP_SUFFIXES if record.file_name.endswith(s)), None)
    if record.num_classes is not None:
        return record
    if suffix is None:
        raise WeightsError(
            f"no classifier top is published for {model} {tag} weights ({record.file_name} is "
            "headless); use transferkit extract or finetune to train a head"
        )
    file_name = record.file_name[: -len(suffix)] + ".h5"
    return replace(
        record,
        file_name=file_name,
        url=record.url[: -len(record.file_name)] + file_name,
        file_hash=TOP_HASHES.get(file_name),
        num_classes=1000,
        bundled=False,
        sha256=None,
    )


def _h5_layers(path: Path) -> list[tuple[str, list[np.ndarray]]]:
    """Weighted layers of a legacy Keras HDF5 weights (or model) file, in saved order."""
    import h5py

    def text(value: Any) -> str:
        return value.decode("utf8") if isinstance(value, bytes) else str(value)

    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        layers = []
        for name in map(text, group.attrs["layer_names"]):
            weight_names = [text(w) for w in group[name].attrs.get("weight_names", [])]
            if weight_names:
                layers.append((name, [np.asarray(group[name][w]) for w in weight_names]))
    return layers


def load_top_file(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Loads a keras.applications ``include_top`` file into a model with the shared head.

    Weighted layers pair up in order (as Keras loads legacy files); a kernel whose shape differs
    only by 1x1 spatial axes (a ``Conv2D`` classifier into the ``predictions`` Dense) is reshaped.

    Raises:
        WeightsError: the file does not fit; names the first layer that does not.
    """
    saved = _h5_layers(Path(path))
    mine = [layer for layer in model.layers if layer.weights]
    if len(saved) != len(mine):
        raise WeightsError(f"{path} has {len(saved)} weighted layers, {model.name} has {len(mine)}")
    for (name, arrays), layer in zip(saved, mine):
        shapes = [tuple(w.shape) for w in layer.weights]
        values = []
        for array, shape in zip(arrays, shapes):
            if array.shape != shape and array.size == int(np.prod(shape)) and array.shape[-1:] == shape[-1:]:
                array = array.reshape(shape)
            values.append(array)
        if len(values) != len(shapes) or [v.shape for v in values] != shapes:
            raise WeightsError(
                f"{path} does not fit {model.name}: layer {name!r} of the file has weights "
                f"{[a.shape for a in arrays]} but layer {layer.name!r} has {shapes}"
            )
        layer.set_weights(values)
