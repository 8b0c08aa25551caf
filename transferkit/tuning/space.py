"""Hyperparameter search with keras-tuner over the registry's models.

A search space is data: ``{"depth": [10, 16, 22], "width": [1, 2, 4], "lr": {"min": 1e-4,
"max": 1e-2, "sampling": "log"}}``. A list is a ``hp.Choice``, a ``{"min", "max"[, "step",
"sampling", "default"]}`` range an ``hp.Int`` (integer bounds and step) or ``hp.Float``, a plain
value an ``hp.Fixed``. Each key is one of:

* a builder argument of the base's family (``alpha``, ``block_dropout``, ResNet ``depth``...),
  passed to :func:`~transferkit.models.create_model` as an override; the arguments a registry
  name spells (Wide ResNet ``depth`` and ``width``) choose the name instead (``wrn_22_4``);
* a head key (``dropout``, ``pooling``, ``hidden_units``), passed to the shared head;
* a training key (``lr``, ``optimizer``);
* ``base``: a choice of registry names (e.g. the pretrained ``mobilenet_v1_025`` .. ``_100``).

This module holds the spaces as data and checks them; :mod:`transferkit.tuning.search` runs them.
"""

from __future__ import annotations

import inspect
import itertools
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras_tuner
from keras_tuner.engine import hyperparameters as kt_hp

from transferkit import transfer
from transferkit.models import registry
from transferkit.errors import ConfigError
from transferkit.models.head import POOLINGS
from transferkit.models.registry import ModelInfo

TUNERS = {
    "random": keras_tuner.RandomSearch,
    "bayesian": keras_tuner.BayesianOptimization,
    "hyperband": keras_tuner.Hyperband,
}
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}
DISTRIBUTIONS = ("mirrored",)
HEAD_KEYS = ("dropout", "pooling", "hidden_units")
FLOAT_KEYS = ("lr", "dropout")  # a range of these is real-valued even when written {"min": 0, "max": 1}
TRAINING_KEYS = ("lr", "optimizer")
BASE_KEY = "base"
RANGE_KEYS = frozenset({"min", "max", "step", "sampling", "default"})
SAMPLINGS = ("linear", "log", "reverse_log")

# Builder arguments that a registry name spells; the family's builder refuses them as overrides
# (create_model("wrn_28_10", depth=16) is an error), so a sampled value picks the name.
NAMED_BY: dict[tuple[str, str | None], str] = {
    ("wide_resnet", "cifar"): "wrn_{depth}_{width}",
    ("wide_resnet", "imagenet"): "wide_resnet{depth}_{width}",
}

_LR = {"min": 1e-4, "max": 1e-2, "sampling": "log"}
_DROPOUT = {"min": 0.0, "max": 0.5, "step": 0.1}
# Presets by name, then by family (``family/dataset`` where a family has CIFAR and ImageNet
# forms); "*" fits every family.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {
        # Zagoruyko & Komodakis 2016: depth, width factor k and in-block dropout (section 2.4).
        "wide_resnet/cifar": {
            "depth": [10, 16, 22, 28],
            "width": [1, 2, 4, 8],
            "block_dropout": _DROPOUT,
            "lr": _LR,
        },
        # He et al. 2015, CIFAR: the 6n+2 depths of Table 6.
        "resnet/cifar": {"depth": [20, 32, 44, 56, 110], "lr": _LR},
        # Howard et al. 2017: the width multipliers of Table 6, and the head's dropout.
        "mobilenet": {"alpha": [0.25, 0.5, 0.75, 1.0], "dropout": _DROPOUT, "lr": _LR},
    },
    # Architecture fixed (e.g. pretrained weights, the base frozen): only the head and the
    # learning rate. A hidden layer is the one other choice of head (VGG/AlexNet-style FC);
    # pooling is left out because each pooling needs its own pass of a frozen base.
    "head": {"*": {"dropout": _DROPOUT, "hidden_units": [0, 256], "lr": _LR}},
}


# --- The search space ---------------------------------------------------------------------------


def _family_key(info: ModelInfo) -> str:
    dataset = info.kwargs.get("dataset")
    return f"{info.family}/{dataset}" if dataset else info.family


def preset_space(name: str, base: str) -> dict[str, Any]:
    """The preset search space ``name`` for the family of ``base``.

    Raises:
        ConfigError: an unknown preset, or one without an entry for the family.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown space preset {name!r}; valid: {', '.join(PRESETS)}")
    info = registry.get_model_info(base)
    presets = PRESETS[name]
    space = presets.get(_family_key(info), presets.get(info.family, presets.get("*")))
    if space is None:
        having = ", ".join(sorted(presets))
        raise ConfigError(
            f"the {name!r} preset has no space for {info.name} ({_family_key(info)}; it has: "
            f"{having}); use --space-preset head or give a --space file"
        )
    return json.loads(json.dumps(space))  # a copy the caller may change


def builder_arguments(info: ModelInfo) -> tuple[str, ...]:
    """Keyword arguments the family's builder takes (the architecture keys a space may tune).

    A builder that forwards ``**options`` (a name-fixing wrapper) is read through the family's
    public builder, the module function named after the family (``wide_resnet.wide_resnet``).
    """
    names = list(info.kwargs)
    builders = [info.builder]
    params = inspect.signature(info.builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        family_builder = getattr(sys.modules.get(info.builder.__module__), info.family, None)
        if callable(family_builder):
            builders.append(family_builder)
    for builder in builders:
        for p in list(inspect.signature(builder).parameters.values())[1:]:  # [0] is the image
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names:
                names.append(p.name)
    return tuple(names)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def declare(hp: keras_tuner.HyperParameters, key: str, spec: Any) -> Any:
    """Declares ``key`` on ``hp`` from its spec and returns the current value."""
    if isinstance(spec, list):
        return hp.Choice(key, spec)
    if isinstance(spec, Mapping):
        low, high, step = spec["min"], spec["max"], spec.get("step")
        sampling, default = spec.get("sampling", "linear"), spec.get("default")
        integral = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
        if integral and key not in FLOAT_KEYS and (step is None or isinstance(step, int)):
            return hp.Int(key, low, high, step=step, sampling=sampling, default=default)
        return hp.Float(key, low, high, step=step, sampling=sampling, default=default)
    return hp.Fixed(key, spec)


def _candidates(hp: Any) -> list[Any]:
    """The values a declared hyperparameter can take, or its bounds when there are too many."""
    if isinstance(hp, kt_hp.Choice):
        return list(hp.values)
    if isinstance(hp, kt_hp.Int) and hp.sampling == "linear":
        values = range(hp.min_value, hp.max_value + 1, hp.step or 1)
        if len(values) <= 1000:
            return list(values)
    if isinstance(hp, (kt_hp.Int, kt_hp.Float)):
        return [hp.min_value, hp.max_value]
    return [hp.value]


def check_space(
    base: str, space: Mapping[str, Any], weights: str | None = None
) -> dict[str, list[Any]]:
    """Validates a search space against the base's family, before anything runs.

    Every spec is declared on a scratch :class:`keras_tuner.HyperParameters` (keras-tuner checks
    ranges and samplings), every key must be one the family, the head or training takes, and
    every registry name the space can spell must exist.

    Returns:
        The candidate values of each key (bounds only for continuous ranges).

    Raises:
        ConfigError: a malformed spec, an unknown key (the message lists the valid ones), a name
            the space spells that does not exist, or architecture keys with fixed weights.
    """
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(
            f"a search space must be a non-empty mapping of hyperparameter -> values, got {space!r}"
        )
    scratch = keras_tuner.HyperParameters()
    candidates: dict[str, list[Any]] = {}
    for key, spec in space.items():
        if not isinstance(key, str):
            raise ConfigError(f"search space keys must be strings, got {key!r}")
        if isinstance(spec, list) and not spec:
            raise ConfigError(f"search space {key!r}: a choice needs at least one value")
        if isinstance(spec, list) and not all(isinstance(v, (int, float, str, bool)) for v in spec):
            raise ConfigError(f"search space {key!r}: choices must be numbers, strings or booleans, got {spec!r}")
        if isinstance(spec, Mapping):
            unknown = set(spec) - RANGE_KEYS
            if unknown or not {"min", "max"} <= set(spec):
                raise ConfigError(
                    f"search space {key!r}: a range is {{'min': ..., 'max': ...[, 'step', "
                    f"'sampling', 'default']}}, got {dict(spec)!r}"
                )
            if not all(isinstance(spec[k], (int, float)) and not isinstance(spec[k], bool) for k in ("min", "max")):
                raise ConfigError(f"search space {key!r}: min and max must be numbers, got {dict(spec)!r}")
            if spec.get("sampling", "linear") not in SAMPLINGS:
                raise ConfigError(
                    f"search space {key!r}: sampling must be one of {', '.join(SAMPLINGS)}, "
                    f"got {spec['sampling']!r}"
                )
        try:
            declare(scratch, key, spec)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"search space {key!r}: {_one_line(err)}") from None
        candidates[key] = _candidates(scratch.space[-1])

    bases = [str(b) for b in candidates.get(BASE_KEY, [base])]
    infos = [registry.get_model_info(b) for b in bases]
    for info in infos:
        arch = builder_arguments(info)
        valid = (BASE_KEY, *TRAINING_KEYS, *HEAD_KEYS, *arch)
        for key in space:
            if key not in valid:
                raise ConfigError(
                    f"{info.name} ({info.family}) has no hyperparameter {key!r}; valid: "
                    f"{', '.join(valid)}"
                )
        arch_keys = [k for k in space if k in arch]
        if weights is not None and arch_keys:
            raise ConfigError(
                f"weights {weights!r} fit {info.name} as published, but the space changes its "
                f"architecture ({', '.join(arch_keys)}); search with weights none, or search "
                f"only {', '.join((BASE_KEY, *TRAINING_KEYS, *HEAD_KEYS))} (--space-preset head)"
            )
        template = NAMED_BY.get((info.family, info.kwargs.get("dataset")))
        named = [k for k in arch_keys if template and "{" + k + "}" in template]
        for combo in itertools.islice(itertools.product(*(candidates[k] for k in named)), 10_000):
            model_arguments(info.name, dict(zip(named, combo)))
    for value in candidates.get("dropout", []):
        if not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"search space 'dropout' must stay in [0, 1), got {value!r}")
    for value in candidates.get("pooling", []):
        if value not in POOLINGS:
            raise ConfigError(f"search space 'pooling': valid {', '.join(POOLINGS)}, got {value!r}")
    for value in candidates.get("lr", []):
        if not float(value) > 0:
            raise ConfigError(f"search space 'lr' must be positive, got {value!r}")
    for value in candidates.get("optimizer", []):
        transfer.make_optimizer(str(value))
    return candidates


def model_arguments(base: str, values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The registry name and :func:`~transferkit.models.registry.create_model` keyword arguments of
    sampled values (training keys are left out).

    Raises:
        ConfigError: the values spell a registry name that does not exist.
    """
    info = registry.get_model_info(str(values.get(BASE_KEY, base)))
    arch = builder_arguments(info)
    template = NAMED_BY.get((info.family, info.kwargs.get("dataset")))
    overrides = {k: v for k, v in values.items() if k in arch}
    name = info.name
    if template:
        spelled = {k: overrides.pop(k) for k in list(overrides) if "{" + k + "}" in template}
        if spelled:
            name = registry.get_model_info(template.format(**{**info.kwargs, **spelled})).name
    head: dict[str, Any] = {k: values[k] for k in ("dropout", "pooling") if k in values}
    if "hidden_units" in values:
        units = int(values["hidden_units"])
        head["hidden_units"] = (units,) if units > 0 else ()
    return name, {**head, **overrides}


def read_space(path: str) -> dict[str, Any]:
    """A search space JSON file as a mapping.

    Raises:
        ConfigError: a missing file or malformed JSON, in one line.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"--space file {path!r} does not exist")
    try:
        space = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"--space file {path!r} is not valid JSON: {err}") from None
    if not isinstance(space, dict):
        raise ConfigError(
            f"--space file {path!r} must hold a JSON object of hyperparameter -> values, "
            f"got {type(space).__name__}"
        )
    return space
