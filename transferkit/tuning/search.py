"""The search: keras-tuner's tuners and oracles over a space given as data
(:mod:`transferkit.tuning.space`).

keras-tuner does the searching, the bookkeeping and the resuming; :class:`TransferHyperModel`
only turns sampled values into a compiled model (through the one factory and the one freeze),
and :func:`tune` wires data, run folder and distribution around ``tuner.search``.

With pretrained or file weights the base is frozen and only the head trains. Its output for an
image then never changes, so unless the training images are augmented the base runs over them
once per search (:class:`SearchFeatures`, through the feature cache of
:mod:`transferkit.transfer.features`) and every trial trains only the head on those features.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from transferkit import transfer
from transferkit.errors import ConfigError
from transferkit.models import base_of, build_model, checked_image_size, get_model_info
from transferkit.runs import distribute as distribute_lib
from transferkit.runs import folder as run_folder
from transferkit.transfer import features
from transferkit.transfer.schedules import classification_loss
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


LOSS = "sparse_categorical_crossentropy"


class SearchFeatures:
    """The frozen base's features of a search's training and validation images, for every trial.

    They are computed once per extractor (one per ``base`` and ``pooling`` the space can choose,
    since both change the features) and kept in memory for the search; on disk they go through
    the feature cache of :mod:`transferkit.transfer.features` (keyed by extractor, weights and
    each file's contents), so a later search, or an ``extract`` run, over the same files
    computes none.

    Args:
        data: The search's :class:`~transferkit.data.DataBundle`; its training images must not be
            augmented.
        weights: The pretrained tag or weights file of the bases.
        batch_size: Batch size of the feature pass and of head training.
        seed: Seed of the shuffling of the training features.
        cache: ``disk``, ``memory`` (this process only) or ``none`` (this search only).
        folder: Folder of the disk cache (:func:`~transferkit.transfer.features.default_cache_dir`
            when None).
        log: Called with one-line progress messages.
    """

    def __init__(
        self,
        data: Any,
        weights: str,
        batch_size: int = 32,
        seed: int = 0,
        cache: str = "disk",
        folder: str | os.PathLike[str] | None = None,
        log: Any = None,
    ) -> None:
        if cache not in features.FEATURE_CACHES:
            raise ConfigError(f"feature cache must be one of {', '.join(features.FEATURE_CACHES)}, got {cache!r}")
        self.data, self.weights, self.batch_size, self.seed = data, weights, batch_size, seed
        self.cache, self.folder = cache, folder
        self.log = log or (lambda msg: None)
        self.computed = 0
        self.cached = 0
        self._datasets: dict[str, tuple[Any, Any]] = {}

    def datasets(self, base: str, extractor: keras.Model) -> tuple[Any, Any]:
        """``(train, val)`` batches of ``(features, label)`` of ``extractor``, the frozen part of a
        ``base`` classifier (see :func:`transferkit.transfer.split_head`)."""
        key = features.extractor_key(extractor, features.weights_identity(base, self.weights, self.seed))
        if key not in self._datasets:
            store = features.FeatureStore(key, self.cache, self.folder)
            got = features.data_features(extractor, self.data, store, self.batch_size, extractor.input_shape[-1])
            if got.undecodable:
                self.log(f"transferkit: skipped {len(got.undecodable)} files that cannot be decoded (e.g. {got.undecodable[0]})")
            for split, (_, labels) in (("train", got.train), ("val", got.val)):
                if not len(labels):
                    raise ConfigError(f"no {split} image left after decoding; check the data with `transferkit doctor`")
            where = f"on disk in {store.path.parent}" if store.path is not None else f"in memory ({self.cache})"
            self.log(
                f"transferkit: {base} features of {got.computed} images computed, {got.cached} read "
                f"from the feature cache ({where}); every trial trains only the head on them"
            )
            self.computed += got.computed
            self.cached += got.cached
            self._datasets[key] = features.feature_datasets(got, self.batch_size, self.seed)
        return self._datasets[key]


class TransferHyperModel(keras_tuner.HyperModel):
    """Builds and compiles a classifier from a search space given as data.

    Every trial's classifier comes from :func:`transferkit.models.build_model` (the weights tag
    or file, the head arguments) and, with weights, goes through
    :func:`transferkit.transfer.freeze`: the whole base is frozen, BatchNormalization in
    inference mode, and only the head trains; the trials share that base, built and loaded
    once. Without weights every layer trains, each trial from its own initialisation.

    Given ``features``, the trials tune the head alone: :meth:`build` returns the classifier's
    head (:func:`transferkit.transfer.split_head`, ``features -> probabilities``, sharing its
    layers with the classifier) and :meth:`fit` trains it on the frozen base's features, computed
    once per search. keras-tuner's checkpoints then hold only the head; :meth:`classifier` gives
    the image-in classifier a head belongs to, trained with it.

    Args:
        base: Registry name the space's architecture keys apply to.
        num_classes: Classes of the ``predictions`` layer.
        space: The search space (see the module docstring); checked by :func:`check_space`.
        input_shape: ``(height, width, channels)``.
        weights: Weights of every trial's model (``None``, a pretrained tag or a file).
        optimizer: Optimizer when the space does not choose one.
        lr: Learning rate when the space does not tune one.
        features: The frozen base's features (weights required); None trains on the images.
        soft_labels: The data's labels are one-hot rows (mixup, cutmix): categorical cross-entropy.
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
        *,
        features: SearchFeatures | None = None,
        soft_labels: bool = False,
    ) -> None:
        super().__init__(name=f"transferkit_{base}")
        self.soft_labels = soft_labels
        if features is not None and weights is None:
            raise ConfigError("cached features need a frozen base: give pretrained weights or a weights file")
        self.base = base
        self.num_classes = num_classes
        self.space = dict(space)
        self.input_shape = tuple(input_shape)
        self.weights = weights
        self.optimizer = optimizer
        self.lr = lr
        self.features = features
        self._backbones: dict[str, keras.Model] = {}
        # head -> (classifier, extractor) it was split from; gone with the head
        self._parts: weakref.WeakKeyDictionary[keras.Model, tuple[keras.Model, keras.Model]] = weakref.WeakKeyDictionary()

    @property
    def frozen(self) -> bool:
        """Whether the base is frozen (pretrained or file weights) and only the head trains."""
        return self.weights is not None

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        values = {key: declare(hp, key, spec) for key, spec in self.space.items()}
        name, kwargs = model_arguments(self.base, values)
        size, _, channels = self.input_shape
        # A frozen base never changes: every trial's head goes on the one built first.
        backbone = self._backbones.get(name) if self.frozen else None
        model = build_model(name, self.num_classes, self.weights, size, channels, backbone=backbone, **kwargs)
        if self.frozen:
            self._backbones.setdefault(name, base_of(model))
            transfer.freeze(model)
        trained = model
        if self.features is not None:
            extractor, trained = transfer.split_head(model)
            self._parts[trained] = (model, extractor)
        trained.compile(
            optimizer=transfer.make_optimizer(
                str(values.get("optimizer", self.optimizer)), float(values.get("lr", self.lr))
            ),
            loss=classification_loss(soft_labels=self.soft_labels) if self.soft_labels else LOSS,
            metrics=["accuracy"],
        )
        return trained

    def classifier(self, model: keras.Model) -> keras.Model:
        """The image-in classifier of a model :meth:`build` returned (the model itself, or the
        classifier a head was split from, which trained with it)."""
        return self._parts[model][0] if model in self._parts else model

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        if model not in self._parts:
            return model.fit(*args, **kwargs)
        classifier, extractor = self._parts[model]
        train, val = self.features.datasets(classifier.name, extractor)  # type: ignore[union-attr]
        kwargs.pop("validation_data", None)
        return model.fit(train, validation_data=val, **kwargs)

    def evaluate(self, model: keras.Model, val: Any) -> tuple[float, float]:
        """``(val_loss, val_accuracy)`` of a model :meth:`build` returned, trained: a head on
        the cached validation features, a classifier on ``val``."""
        if model in self._parts:
            classifier, extractor = self._parts[model]
            val = self.features.datasets(classifier.name, extractor)[1]  # type: ignore[union-attr]
        loss, accuracy = model.evaluate(val, verbose=0)
        return float(loss), float(accuracy)


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


def _augmented(augment: bool | None, frozen: bool, data_options: Any) -> bool:
    """Whether the training images are augmented: as asked, else (None) unless the base is
    frozen and ``data_options`` names no augmentation."""
    from transferkit.data import pipeline

    spec = getattr(data_options, "augment_spec", None)
    if augment is None:
        augment = not frozen or spec is not None
    return augment and bool(pipeline.parse_augment(spec or pipeline.DEFAULT_AUGMENT))


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
    augment: bool | None = None,
    data_options: Any = None,
    feature_cache: str = "disk",
    feature_cache_dir: str | os.PathLike[str] | None = None,
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

    With ``weights`` the base of every trial is frozen (BatchNormalization in inference mode)
    and only the head trains. Without augmentation the base then runs over the images once per
    search, not once per trial: its features are cached (see :class:`SearchFeatures`) and every
    trial trains only the head on them. The saved model is still one image-in,
    probabilities-out model: the frozen base under the best trial's head.

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
        augment: Augment the training images. None (default): augment, except when ``weights``
            freeze the base and no augmentation is asked for in ``data_options.augment_spec``
            (features of unaugmented images are computed once per search).
        data_options: A :class:`~transferkit.data.options.DataOptions` for :func:`load_data`.
        feature_cache: Where a frozen base's features are kept: ``disk`` (default; reused by later
            searches and ``extract`` runs), ``memory`` (this process) or ``none`` (this search).
        feature_cache_dir: Folder of the disk cache (``~/.cache/transferkit/features`` or
            ``$TRANSFERKIT_CACHE/features`` when None).
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
    if feature_cache not in features.FEATURE_CACHES:
        raise ConfigError(f"feature cache must be one of {', '.join(features.FEATURE_CACHES)}, got {feature_cache!r}")
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

    frozen = weights is not None
    augmented = _augmented(augment, frozen, data_options)
    cache_features = frozen and not augmented
    log = (lambda msg: print(msg, file=sys.stderr)) if verbose else (lambda msg: None)

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
        from transferkit.data.tfds_source import is_tfds

        extra = data_options.kwargs() if data_options is not None else {}
        if cache_features and not is_tfds(data):
            # Images are decoded only for features missing from the cache, never by the trials.
            extra["cache"] = "none"
        bundle = load_data(data, size, batch_size, val_split, seed, augmented, **extra)
    if bundle.val is None:
        raise ConfigError("a search needs validation data; give val_split > 0 or a validation split")

    if frozen:
        log(
            f"transferkit: {info.name} ({weights}) frozen, BatchNormalization in inference mode: "
            "every trial trains only the head"
        )
    if frozen and augment is None and not augmented:
        log(
            "transferkit: no augmentation for a search on a frozen base, so the base's features "
            "are computed once per search (give --augment SPEC to augment; the base then runs in "
            "every trial)"
        )
    elif frozen and augmented:
        log(
            "transferkit: augmentation is on, so every epoch sees new pixels and the base's "
            "features cannot be cached: every trial trains the head on the frozen base over the "
            "images (slower; --no-augment caches them)"
        )
    keras.utils.set_random_seed(seed)
    strategy = make_strategy(distribute)
    search_features = (
        SearchFeatures(bundle, weights, batch_size, seed, feature_cache, feature_cache_dir, log)  # type: ignore[arg-type]
        if cache_features
        else None
    )
    hypermodel = TransferHyperModel(
        info.name, bundle.num_classes, space, (size, size, 3), weights, optimizer, lr,
        features=search_features, soft_labels=bundle.soft_labels,
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
    # keras-tuner fills the list with unfinished or failed trials when too few completed.
    best_trial = [t for t in search.oracle.get_best_trials(1) if t.status == "COMPLETED"]
    if not best_trial:
        raise ConfigError(f"no trial completed (see {work}); check the space and the data")
    best_hp = _space_values(best_trial[0].hyperparameters.values)
    with warnings.catch_warnings():
        # The trial checkpoint holds the trained optimizer's slots; the rebuilt model needs none.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        best = search.get_best_models(1)[0]
    val_loss, val_accuracy = hypermodel.evaluate(best, bundle.val)
    model = hypermodel.classifier(best)  # a head trained on features: its frozen base with it
    if model is not best:
        model.compile(optimizer=best.optimizer, loss=LOSS, metrics=["accuracy"])
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
            "augment": augmented,
            "trains": "head on cached base features" if search_features else ("head" if frozen else "whole model"),
            "feature_cache": feature_cache if search_features else None,
            "features_computed": search_features.computed if search_features else None,
            "features_cached": search_features.cached if search_features else None,
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
