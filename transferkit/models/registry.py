"""The one model registry: every family registers its builders here, and the CLI, recipes, tuner
and tests refer to models by name only.

A registered model is a *headless backbone builder* plus metadata (:class:`ModelInfo`). Names
become models only in :mod:`transferkit.models.factory`. Importing ``transferkit.models`` (which
any import of this module does first) registers every family.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transferkit.errors import ConfigError
from transferkit.models.weights import pretrained_tags

Builder = Callable[..., Any]
"""``builder(x, **kwargs) -> feature map``: takes the preprocessed image tensor, returns a 4-D tensor."""


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of one named model.

    Attributes:
        name: Lowercase registry name, e.g. ``"resnet50"``.
        family: Family name, e.g. ``"resnet"``; one module under ``transferkit/models/`` each.
        builder: The family's backbone builder, called as ``builder(x, **kwargs)``.
        kwargs: The builder arguments that make this variant (one row of the family's spec table).
        input_shape: Default ``(height, width, channels)``.
        min_size: Smallest height/width the network can downsample.
        preprocessing: :class:`~transferkit.models.layers.Preprocess` mode used when no pretrained
            weights dictate one.
        head: Defaults of the shared head (``pooling``, ``hidden_units``, ``dropout``), or a
            function of the builder arguments returning them, for options that change the head
            too (LeNet's ``faithful``).
        stages: Stage names in order (layer names start with them); freezing by stage uses these.
        paper_params: Parameter count the paper reports for the full classifier, if any.
        paper_classes: Number of classes of the classifier the paper counted.
        paper: Citation of the paper.
        fixed_input: True when the architecture only takes ``input_shape`` (LeNet's faithful
            form, flatten heads sized for one resolution).
        aux_heads: Optional ``aux_heads(backbone, num_classes) -> list of (output, loss_weight)``
            for training-time auxiliary classifiers (GoogLeNet).
    """

    name: str
    family: str
    builder: Builder
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, int, int] = (224, 224, 3)
    min_size: int = 32
    preprocessing: str = "tf"
    head: Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]] = field(
        default_factory=lambda: {"pooling": "avg"}
    )
    stages: tuple[str, ...] = ()
    paper_params: int | None = None
    paper_classes: int = 1000
    paper: str = ""
    fixed_input: bool = False
    aux_heads: Callable[..., list[tuple[Any, float]]] | None = None


def residual_family_info(
    name: str,
    family: str,
    builder: Builder,
    kwargs: Mapping[str, Any],
    cifar: bool,
    stages: int,
    preprocessing: str,
    paper_params: int | None,
    paper: str,
) -> ModelInfo:
    """The :class:`ModelInfo` of a network with a CIFAR form (32x32, 10 classes, downsampling to
    4x4) and an ImageNet form (224x224, 1000 classes): ``stem`` then ``stages`` numbered stages
    (ResNet, Wide ResNet and DenseNet register their variants through this)."""
    return ModelInfo(
        name=name,
        family=family,
        builder=builder,
        kwargs=kwargs,
        input_shape=(32, 32, 3) if cifar else (224, 224, 3),
        min_size=4 if cifar else 32,
        preprocessing=preprocessing,
        head={"pooling": "avg"},
        stages=("stem",) + tuple(f"stage{i}" for i in range(1, stages + 1)),
        paper_params=paper_params,
        paper_classes=10 if cifar else 1000,
        paper=paper,
    )


_MODELS: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}
_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], ModelInfo]]] = []


def register_model(info: ModelInfo, aliases: tuple[str, ...] = ()) -> ModelInfo:
    """Adds a named model (and its aliases) to the registry; returns it."""
    if info.name in _MODELS or info.name in _ALIASES:
        raise RuntimeError(f"model name {info.name!r} is registered twice")
    _MODELS[info.name] = info
    for alias in aliases:
        if alias in _MODELS or alias in _ALIASES:
            raise RuntimeError(f"alias {alias!r} is registered twice")
        _ALIASES[alias] = info.name
    return info


def register_pattern(pattern: str, resolve: Callable[[re.Match[str]], ModelInfo]) -> None:
    """Registers a family of names given by a regular expression (e.g. ``wrn_(\\d+)_(\\d+)``).

    ``resolve(match)`` returns the :class:`ModelInfo` for a matching name, or raises
    :class:`~transferkit.errors.ConfigError` when the numbers are not a valid network.
    """
    _PATTERNS.append((re.compile(pattern + r"\Z"), resolve))


def get_model_info(name: str) -> ModelInfo:
    """Looks up a model by name, alias or pattern.

    Raises:
        ConfigError: unknown name; the message lists the closest registered names.
    """
    if not isinstance(name, str):
        raise ConfigError(f"a model name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _MODELS:
        return _MODELS[key]
    for regex, resolve in _PATTERNS:
        match = regex.match(key)
        if match:
            return resolve(match)
    close = difflib.get_close_matches(key, list(_MODELS) + list(_ALIASES), n=5, cutoff=0.5)
    hint = f"closest: {', '.join(close)}" if close else "run `transferkit models` to list them"
    raise ConfigError(f"unknown model {name!r}; {hint}")


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered model names matching a shell-style pattern, sorted.

    Args:
        pattern: e.g. ``"resnet*"``.
        pretrained: Only names with at least one pretrained weights record.
    """
    names = sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern.lower()))
    if pretrained:
        names = [n for n in names if pretrained_tags(n)]
    return names


@functools.cache
def parameter_counts() -> dict[str, int]:
    """The parameter count of every registered name's classifier (``create_model(name)`` at its
    default input and classes), read from ``params.json`` beside this module without building
    anything. ``tests/test_zoo.py`` builds every name and checks its count, so these cannot drift.
    """
    with open(Path(__file__).with_name("params.json"), encoding="utf-8") as f:
        return dict(json.load(f))


def aliases_of(name: str) -> list[str]:
    """The aliases that resolve to ``name``."""
    return sorted(a for a, n in _ALIASES.items() if n == name)


def check_input_shape(info: ModelInfo, input_shape: Any = None) -> tuple[int, int, int]:
    """``input_shape`` (or the variant's default) as ``(height, width, channels)``, checked
    against what the architecture can take."""
    default = tuple(info.input_shape)
    shape = tuple(default if input_shape is None else input_shape)
    if len(shape) == 2:
        shape = (*shape, default[2])
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ConfigError(
            f"input_shape must be (height, width, channels) of positive integers, got {input_shape!r}"
        )
    h, w, _ = shape
    if info.fixed_input and shape != tuple(info.input_shape):
        raise ConfigError(
            f"{info.name} takes only input shape {tuple(info.input_shape)}, got {shape}"
        )
    if min(h, w) < info.min_size:
        raise ConfigError(
            f"{info.name} needs images of at least {info.min_size}x{info.min_size} pixels "
            f"(it downsamples too often for smaller ones), got {h}x{w}; use a larger image size"
        )
    return shape  # type: ignore[return-value]


def with_kwargs(info: ModelInfo, name: str, **kwargs: Any) -> ModelInfo:
    """A copy of ``info`` under a new name with builder arguments added (for pattern families)."""
    return replace(info, name=name, kwargs={**info.kwargs, **kwargs})
