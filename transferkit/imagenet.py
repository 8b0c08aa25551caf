"""Use as-is: the published ImageNet classifier unchanged, its class names, and mappings from a
user's classes to ImageNet classes so an unchanged model can be scored with no training.

The class names ship with the package (``assets/imagenet``). The classifier tops are published
as separate ``include_top`` files beside the headless ones; :func:`top_record` derives their
:class:`~transferkit.weights.PretrainedWeights` record from the headless record (keras.applications'
file names, URLs and hashes), and :func:`load_top_file` loads one into a model built with the
shared head, reshaping a 1x1-convolution classifier (MobileNet's ``conv_preds``) into the
``predictions`` Dense layer.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from transferkit.errors import ConfigError, WeightsError

CLASSES_FILE = Path(__file__).parent / "assets" / "imagenet" / "imagenet_classes.txt"

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


@functools.lru_cache(maxsize=1)
def _classes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    wnids, names = [], []
    for line in CLASSES_FILE.read_text().splitlines():
        wnid, name = line.split("\t")
        wnids.append(wnid)
        names.append(name)
    return tuple(wnids), tuple(names)


def class_names(short: bool = True) -> list[str]:
    """The 1000 ImageNet class names in index order; ``short`` keeps the first synonym only."""
    names = _classes()[1]
    return [n.split(",")[0].strip() for n in names] if short else list(names)


def wnids() -> list[str]:
    """The WordNet ids of the 1000 classes in index order (``n01440764`` is class 0)."""
    return list(_classes()[0])


def find_class(name: str) -> int:
    """The index of an ImageNet class given by WordNet id, index, or any of its synonyms.

    Raises:
        ConfigError: no class has that name; the message suggests close ones.
    """
    key = name.strip().lower()
    ids, names = _classes()
    if key.isdigit() and int(key) < len(ids):
        return int(key)
    for i, (wnid, synonyms) in enumerate(zip(ids, names)):
        if key == wnid or key in (s.strip().lower() for s in synonyms.split(",")):
            return i
    import difflib

    flat = [s.strip().lower() for n in names for s in n.split(",")]
    close = difflib.get_close_matches(key, flat, n=4, cutoff=0.6)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise ConfigError(f"no ImageNet class is called {name!r}{hint} (names are WordNet synonyms or ids like n02219486)")


def parse_class_map(spec: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, list[int]]:
    """A mapping from a user's classes to ImageNet class indices.

    ``spec`` is ``"ant=ant,bee=bee"`` (several ImageNet classes joined with ``+``:
    ``"dog=beagle+basset"``), a file of ``user_class<TAB or =>imagenet class[+...]`` lines (or a
    two-column CSV), or a dict.
    """
    if isinstance(spec, Mapping):
        items = [(k, v if isinstance(v, str) else "+".join(map(str, v))) for k, v in spec.items()]
    else:
        text = str(spec)
        path = Path(text).expanduser()
        if "=" not in text and path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            rows = [ln.split("\t") if "\t" in ln else ln.split("=", 1) if "=" in ln else next(csv.reader([ln])) for ln in lines]
            items = [(r[0], "+".join(r[1:])) for r in rows if len(r) >= 2]
        else:
            items = [tuple(part.split("=", 1)) for part in text.split(",") if part.strip()]  # type: ignore[misc]
            if any(len(i) != 2 for i in items):
                raise ConfigError(f"--map takes user=imagenet pairs like 'ant=ant,bee=bee' or a file, got {text!r}")
    mapping = {k.strip(): [find_class(c) for c in str(v).split("+") if c.strip()] for k, v in items}
    if not mapping:
        raise ConfigError(f"the class map {spec!r} maps no class")
    return mapping


def mapped_predictions(probabilities: np.ndarray, mapping: Mapping[str, Sequence[int]], class_order: Sequence[str]) -> np.ndarray:
    """Scores of the user's classes: for each, the summed probability of its ImageNet classes.

    Returns:
        ``(n, len(class_order))`` scores in ``class_order``.
    """
    missing = [c for c in class_order if c not in mapping]
    if missing:
        raise ConfigError(
            f"the class map has no entry for {', '.join(map(repr, missing))}; map every class of the "
            f"data, e.g. --map {','.join(f'{c}=<imagenet name>' for c in class_order)}"
        )
    return np.stack([probabilities[:, list(mapping[c])].sum(axis=1) for c in class_order], axis=1)


def top_k(probabilities: np.ndarray, k: int = 5, labels: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable ``(label, probability)`` of each row."""
    labels = list(labels) if labels is not None else class_names()
    order = np.argsort(-probabilities, axis=1)[:, :k]
    return [[(labels[j], float(row[j])) for j in idx] for row, idx in zip(probabilities, order)]


# --- The published classifier tops --------------------------------------------------------------


def top_record(model: str, tag: str = "imagenet") -> Any:
    """The record of the ``include_top`` file published beside a headless ``tag`` record.

    Raises:
        WeightsError: no ``tag`` weights for ``model``, or no published top for them.
    """
    from transferkit import weights as weights_lib

    record = weights_lib.get_record(model, tag)
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


def pretrained_classifier(model: str, tag: str = "imagenet") -> keras.Model:
    """The published classifier, unchanged: our backbone and shared head with the top file loaded.

    The top files are not bundled; the first use downloads one (or finds it in
    ``$KERAS_HOME/models``), like ``keras.applications`` with ``include_top=True``.
    """
    from transferkit import registry
    from transferkit import weights as weights_lib
    from transferkit.transfer import set_preprocessing

    record = top_record(registry.get_model_info(model).name, tag)
    size = record.input_size
    classifier = registry.create_model(model, num_classes=record.num_classes, input_shape=(size, size, 3))
    set_preprocessing(classifier, record.preprocessing)
    load_top_file(classifier, weights_lib.resolve_file(record))
    return classifier


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
