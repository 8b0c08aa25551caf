"""Hyperparameter search with keras-tuner over the registry's models.

A search space is data: ``{"depth": [10, 16, 22], "width": [1, 2, 4], "lr": {"min": 1e-4,
"max": 1e-2, "sampling": "log"}}``. A list is a ``hp.Choice``, a ``{"min", "max"[, "step",
"sampling", "default"]}`` range an ``hp.Int`` (integer bounds and step) or ``hp.Float``, a plain
value an ``hp.Fixed``. Each key is one of:

* a builder argument of the base's family (``alpha``, ``block_dropout``, ResNet ``depth``...),
  passed to :func:`~transferkit.registry.create_model` as an override; the arguments a registry
  name spells (Wide ResNet ``depth`` and ``width``) choose the name instead (``wrn_22_4``);
* a head key (``dropout``, ``pooling``, ``hidden_units``), passed to the shared head;
* a training key (``lr``, ``optimizer``);
* ``base``: a choice of registry names (e.g. the pretrained ``mobilenet_v1_025`` .. ``_100``).

keras-tuner does the searching, the bookkeeping and the resuming (its oracles and tuners);
:class:`TransferHyperModel` only turns sampled values into a compiled model, and :func:`tune`
wires data, run folder and distribution around ``tuner.search``.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
import os
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner
from keras_tuner.engine import hyperparameters as kt_hp

from transferkit import distribute as distribute_lib
from transferkit import registry, runs, transfer
from transferkit.errors import ConfigError
from transferkit.head import POOLINGS
from transferkit.registry import ModelInfo

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
    # Architecture fixed (e.g. pretrained weights): only the head and the learning rate.
    "head": {"*": {"dropout": _DROPOUT, "lr": _LR}},
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


def _declare(hp: keras_tuner.HyperParameters, key: str, spec: Any) -> Any:
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
            _declare(scratch, key, spec)
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
    """The registry name and :func:`~transferkit.registry.create_model` keyword arguments of
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


class TransferHyperModel(keras_tuner.HyperModel):
    """Builds and compiles ``create_model(...)`` from a search space given as data.

    Args:
        base: Registry name the space's architecture keys apply to.
        num_classes: Classes of the ``predictions`` layer.
        space: The search space (see the module docstring); checked by :func:`check_space`.
        input_shape: ``(height, width, channels)``.
        weights: Weights of every trial's model (``None``, a pretrained tag or a file).
        optimizer: Optimizer when the space does not choose one.
        lr: Learning rate when the space does not tune one.
    """

    def __init__(
        self,
        base: str,
        num_classes: int,
        space: Mapping[str, Any],
        input_shape: tuple[int, int, int],
        weights: str | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
    ) -> None:
        super().__init__(name=f"transferkit_{base}")
        self.base = base
        self.num_classes = num_classes
        self.space = dict(space)
        self.input_shape = tuple(input_shape)
        self.weights = weights
        self.optimizer = optimizer
        self.lr = lr

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        values = {key: _declare(hp, key, spec) for key, spec in self.space.items()}
        name, kwargs = model_arguments(self.base, values)
        model = registry.create_model(
            name, self.num_classes, self.weights, self.input_shape, **kwargs
        )
        model.compile(
            optimizer=transfer.make_optimizer(
                str(values.get("optimizer", self.optimizer)), float(values.get("lr", self.lr))
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model


# --- Distribution -------------------------------------------------------------------------------


def distributed_role() -> str | None:
    """``"chief"``, a worker's tuner id, or None outside keras-tuner's distributed mode (set by
    ``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``)."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return None
    missing = [v for v in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if v not in os.environ]
    if missing:
        raise ConfigError(
            f"KERASTUNER_ORACLE_IP is set but {' and '.join(missing)} not; set all three for a "
            "distributed search (see docs/tuning.md)"
        )
    tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    return "chief" if "chief" in tuner_id else tuner_id


def make_strategy(distribute: str | None) -> Any:
    """The ``tf.distribute`` strategy each trial trains under (``"mirrored"``: every GPU, or
    every logical CPU device when there is none); None for the default device."""
    return distribute_lib.make_strategy(distribute, DISTRIBUTIONS)


# --- The search ---------------------------------------------------------------------------------


@dataclass
class TuneResult:
    """What :func:`tune` found.

    Attributes:
        out: The run folder, or None on a distributed worker (the chief writes it).
        hyperparameters: The best trial's values.
        score: The best trial's objective value.
        model: The best trial's model at its best epoch (None on a worker).
        trials: Every trial: id, status, score, hyperparameters, model name.
    """

    out: Path | None
    hyperparameters: dict[str, Any]
    score: float | None
    model: keras.Model | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)


def _space_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The sampled values without Hyperband's ``tuner/...`` bookkeeping entries."""
    return {k: v for k, v in values.items() if not k.startswith("tuner/")}


def _trials(tuner: keras_tuner.Tuner, base: str) -> list[dict[str, Any]]:
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        values = _space_values(trial.hyperparameters.values)
        try:
            model = model_arguments(base, values)[0]
        except ConfigError:
            model = None
        row = {
            "trial_id": trial_id,
            "status": str(trial.status),
            "score": trial.score,
            "best_step": trial.best_step,
            "hyperparameters": values,
            "model": model,
        }
        if "tuner/epochs" in trial.hyperparameters.values:
            row["epochs"] = trial.hyperparameters.values["tuner/epochs"]
        if trial.message:
            row["message"] = trial.message.strip().splitlines()[-1]
        rows.append(row)
    return rows


def _search_spec(**spec: Any) -> dict[str, Any]:
    return json.loads(json.dumps(spec, default=str))


def _check_resumable(work: Path, spec: dict[str, Any]) -> None:
    """A resumed search must be the same search; keras-tuner would silently mix two spaces."""
    path = work / "transferkit_search.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    changed = sorted(k for k in spec if k in old and old[k] != spec[k])
    if changed:
        raise ConfigError(
            f"the search at {work} was started with different {', '.join(changed)} "
            f"({', '.join(f'{k}={old[k]!r}' for k in changed)}); resume it with the same "
            "options, or pass --overwrite to start over"
        )


def tune(
    base: str,
    data: Any,
    space: Mapping[str, Any] | str | None = None,
    tuner: str = "random",
    max_trials: int = 10,
    epochs: int = 10,
    image_size: int | None = None,
    batch_size: int = 32,
    weights: str | None = None,
    out: str | os.PathLike[str] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    resume: bool = False,
    *,
    objective: str = "val_accuracy",
    optimizer: str = "adam",
    lr: float = 1e-3,
    val_split: float = 0.2,
    augment: bool = True,
    data_options: Any = None,
    distribute: str | None = None,
    executions_per_trial: int = 1,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 1,
) -> TuneResult:
    """Searches hyperparameters of a registry model with keras-tuner and writes a run folder.

    The run folder holds the best trial's model (``model.keras``, ``saved_model/``),
    ``labels.txt``, ``best_hyperparameters.json``, ``trials.json`` (every trial's values and
    score), ``metrics.json``, ``config.json`` and ``tuner/``, keras-tuner's own project folder.
    While searching, that project lives beside the destination as ``.<out>.tuner``; an
    interrupted search stays there and ``resume=True`` continues it (finished trials are not
    run again), as it continues a finished run's ``tuner/`` (e.g. with more ``max_trials``).

    Args:
        base: Registry name (see :func:`transferkit.list_models`).
        data: A dataset source for :func:`transferkit.load_data` (folder, CSV, ``tfds:NAME``,
            ``"sample"``) or a loaded :class:`~transferkit.data.DataBundle`.
        space: A search space mapping, a preset name (``"default"``, ``"head"``), or None for
            the ``"default"`` preset of the base's family.
        tuner: ``"random"``, ``"bayesian"`` or ``"hyperband"`` (keras-tuner's tuners).
        max_trials: Number of trials (for Hyperband a cap on its bracket schedule).
        epochs: Epochs per trial (Hyperband's ``max_epochs``).
        image_size: Input side; the base's default when omitted.
        batch_size: Batch size (global, across replicas).
        weights: Weights of every trial (``None``, a pretrained tag, a file).
        out: Run folder to create (default ``runs/<base>-tune-<time>``).
        seed: Seed of the split, the oracle and the initialisation.
        overwrite: Replace an existing run folder and any interrupted search.
        resume: Continue the search saved for ``out``.
        objective: ``val_accuracy`` (default), ``val_loss``, ``accuracy`` or ``loss``.
        optimizer: Optimizer unless the space chooses one.
        lr: Learning rate unless the space tunes ``lr``.
        val_split: Validation fraction when the data has no validation split.
        augment: Augment the training images.
        data_options: A :class:`~transferkit.data.options.DataOptions` for :func:`load_data`.
        distribute: ``"mirrored"`` trains every trial under ``tf.distribute.MirroredStrategy``.
        executions_per_trial: Trainings averaged per trial.
        callbacks: Keras callbacks for every trial's ``fit`` (must be deep-copyable).
        verbose: 0 silent, 1 keras-tuner's and Keras' progress.

    Returns:
        A :class:`TuneResult`.

    Raises:
        ConfigError: any invalid option, space or destination, before anything is written.
        DataError: unusable data.
    """
    from transferkit.train import checked_image_size, default_out

    # Everything that can be checked is checked before data is read or anything written.
    if tuner not in TUNERS:
        raise ConfigError(f"unknown tuner {tuner!r}; valid: {', '.join(TUNERS)}")
    if tuner == "bayesian" and not all(importlib.util.find_spec(m) for m in ("scipy", "sklearn")):
        raise ConfigError(
            "the bayesian tuner needs scipy and scikit-learn: pip install 'keras-tuner[bayesian]' "
            "(or use the random or hyperband tuner)"
        )
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    for option, value in (("max_trials", max_trials), ("epochs", epochs), ("executions_per_trial", executions_per_trial)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{option} must be a whole number of at least 1, got {value!r}")
    if not lr > 0:
        raise ConfigError(f"lr must be positive, got {lr!r}")
    if resume and overwrite:
        raise ConfigError("give --resume (continue the saved search) or --overwrite (start over), not both")
    transfer.make_optimizer(optimizer)
    if distribute is not None and distribute not in DISTRIBUTIONS:
        raise ConfigError(f"unknown distribute {distribute!r}; valid: {', '.join(DISTRIBUTIONS)}")
    info = registry.get_model_info(base)
    preset = None
    if space is None or isinstance(space, str):
        preset = space or "default"
        space = preset_space(preset, info.name)
    candidates = check_space(info.name, space, weights)
    bundle = data if hasattr(data, "class_names") and hasattr(data, "train") else None
    if bundle is not None:
        size = int(bundle.train.element_spec[0].shape[1])
    size = checked_image_size(info.name, weights, image_size if bundle is None else size)
    for name in candidates.get(BASE_KEY, []):
        checked_image_size(str(name), weights, size)

    role = distributed_role()
    out_dir = Path(out or default_out(info.name, "tune")).expanduser()
    work = out_dir.parent / f".{out_dir.name}.tuner"
    spec = _search_spec(
        base=info.name, space=space, tuner=tuner, objective=objective, image_size=size,
        weights=weights, optimizer=optimizer, lr=lr,
    )
    if role not in (None, "chief"):
        pass  # a worker writes trials into the chief's project only
    elif resume:
        finished = out_dir / "tuner"
        if not work.is_dir() and not finished.is_dir():
            raise ConfigError(
                f"nothing to resume for {str(out_dir)!r}: neither an interrupted search "
                f"({work.name}) nor a finished run's tuner/ folder exists; run without --resume"
            )
        _check_resumable(work if work.is_dir() else finished, spec)
        if not work.is_dir():
            shutil.copytree(finished, work)
    else:
        runs.check_out_dir(out_dir, overwrite)
        if work.exists() and not overwrite:
            raise ConfigError(
                f"an interrupted search for {str(out_dir)!r} is saved in {str(work)!r}; pass "
                "--resume to continue it or --overwrite to start over"
            )
        shutil.rmtree(work, ignore_errors=True)

    if bundle is None:
        from transferkit.data import load_data

        extra = data_options.kwargs() if data_options is not None else {}
        bundle = load_data(data, size, batch_size, val_split, seed, augment, **extra)
    if bundle.val is None:
        raise ConfigError("a search needs validation data; give val_split > 0 or a validation split")

    keras.utils.set_random_seed(seed)
    strategy = make_strategy(distribute)
    hypermodel = TransferHyperModel(
        info.name, bundle.num_classes, space, (size, size, 3), weights, optimizer, lr
    )
    options: dict[str, Any] = dict(
        objective=keras_tuner.Objective(objective, OBJECTIVES[objective]),
        seed=seed,
        directory=str(work.parent),
        project_name=work.name,
        overwrite=False,  # overwriting is decided above, so that a worker never wipes the chief's
        distribution_strategy=strategy,
        executions_per_trial=executions_per_trial,
    )
    if tuner == "hyperband":
        options["max_epochs"] = epochs
    else:
        options["max_trials"] = max_trials
    if role in (None, "chief"):
        work.mkdir(parents=True, exist_ok=True)
        runs.write_json(work / "transferkit_search.json", spec)
    search = TUNERS[tuner](hypermodel, **options)
    if tuner == "hyperband":
        search.oracle.max_trials = max_trials
    fit_kwargs: dict[str, Any] = dict(validation_data=bundle.val, epochs=epochs, verbose=verbose)
    if bundle.class_weight:
        fit_kwargs["class_weight"] = bundle.class_weight
    if callbacks:
        fit_kwargs["callbacks"] = list(callbacks)
    try:
        search.search(bundle.train, **fit_kwargs)
    except RuntimeError as err:
        if "consecutive failures" not in str(err):
            raise
        last = str(err).strip().splitlines()[-1]
        raise ConfigError(f"the search stopped: every recent trial failed; last error: {last}") from None

    if role not in (None, "chief"):
        # The chief holds the oracle and may be gone already: a worker asks it nothing more.
        return TuneResult(None, {}, None)
    trials = _trials(search, info.name)
    best_trial = search.oracle.get_best_trials(1)
    if not best_trial:
        raise ConfigError(f"no trial completed (see {work}); check the space and the data")
    best_hp = _space_values(best_trial[0].hyperparameters.values)
    with warnings.catch_warnings():
        # The trial checkpoint holds the trained optimizer's slots; the rebuilt model needs none.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model = search.get_best_models(1)[0]
    val_loss, val_accuracy = model.evaluate(bundle.val, verbose=0)
    best_name = model_arguments(info.name, best_hp)[0]
    _write_run(
        out_dir, work, model, bundle, trials, best_hp, best_trial[0],
        {
            **spec,
            "preset": preset,
            "max_trials": max_trials,
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "distribute": distribute,
            "num_replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
            "executions_per_trial": executions_per_trial,
            "best_model": best_name,
        },
        {
            "val_accuracy": float(val_accuracy),
            "val_loss": float(val_loss),
            "objective": objective,
            "best_trial_id": best_trial[0].trial_id,
            "best_score": best_trial[0].score,
        },
    )
    return TuneResult(out_dir, best_hp, best_trial[0].score, model, trials)


def _write_run(
    out_dir: Path,
    work: Path,
    model: keras.Model,
    bundle: Any,
    trials: list[dict[str, Any]],
    best_hp: dict[str, Any],
    best_trial: Any,
    config: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    from transferkit import __version__
    from transferkit.export import export_saved_model

    with runs.run_folder(out_dir) as tmp:
        model.save(tmp / "model.keras")
        export_saved_model(model, tmp / "saved_model")
        runs.write_labels(tmp / "labels.txt", bundle.class_names)
        runs.write_json(tmp / "best_hyperparameters.json", best_hp)
        runs.write_json(tmp / "trials.json", trials)
        runs.write_json(tmp / "metrics.json", metrics)
        runs.write_json(
            tmp / "config.json",
            {
                **config,
                "out": str(out_dir),
                "class_names": list(bundle.class_names),
                "transferkit_version": __version__,
            },
        )
        if getattr(bundle, "files", ()):
            bundle.write_manifest(tmp / "split.csv")
        # Last, and a rename: the saved search moves into the finished run in one step.
        shutil.move(str(work), str(tmp / "tuner"))
