"""ImageNet's class names, and mappings from a user's classes to ImageNet classes, so the
unchanged pretrained classifier (:func:`transferkit.models.pretrained_classifier`) can be scored
with no training.

The class names ship with the package (``assets/imagenet``).
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import ConfigError

CLASSES_FILE = Path(__file__).resolve().parents[1] / "assets" / "imagenet" / "imagenet_classes.txt"

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
