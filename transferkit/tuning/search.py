"""The search: keras-tuner's tuners and oracles over a space given as data
(:mod:`transferkit.tuning.space`).

keras-tuner does the searching, the bookkeeping and the resuming; :class:`TransferHyperModel`
only turns sampled values into a compiled model, and :func:`tune` wires data, run folder and
distribution around ``tuner.search``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from transferkit import transfer
from transferkit.errors import ConfigError
from transferkit.models import checked_image_size, create_model, get_model_info
from transferkit.runs import distribute as distribute_lib
from transferkit.runs import folder as run_folder
from transferkit.tuning.space import (
    BASE_KEY,
    DISTRIBUTIONS,
    OBJECTIVES,
    TUNERS,
    check_space,
    declare,
    model_arguments,
    preset_space,
)


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
        values = {key: declare(hp, key, spec) for key, spec in self.space.items()}
        name, kwargs = model_arguments(self.base, values)
        model = create_model(
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
    info = get_model_info(base)
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
    out_dir = Path(out or run_folder.default_out(info.name, "tune")).expanduser()
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
        run_folder.check_out_dir(out_dir, overwrite)
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
        run_folder.write_json(work / "transferkit_search.json", spec)
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
    run_folder.write_run(
        out_dir, model, bundle, [], float(val_accuracy), float(val_loss),
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
        metrics={
            "objective": objective,
            "best_trial_id": best_trial[0].trial_id,
            "best_score": best_trial[0].score,
        },
        files={"best_hyperparameters.json": best_hp, "trials.json": trials},
        move_in={"tuner": work},
    )
    return TuneResult(out_dir, best_hp, best_trial[0].score, model, trials)
