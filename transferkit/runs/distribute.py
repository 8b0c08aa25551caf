"""Training on more than one device or machine, with ``tf.distribute`` (never a home-made engine).

* ``mirrored``: ``tf.distribute.MirroredStrategy`` over every GPU of this machine (over every
  logical CPU device when there is none, which is how the tests exercise it).
* ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy``; every machine runs the same
  command with its own ``TF_CONFIG`` (the cluster, and which task it is). Training is
  synchronous; the chief writes the run folder, the other workers write nothing.

``model.fit`` does the rest: the global batch (``--batch-size``) is split across replicas and
the datasets are sharded across workers. The strategy must exist before TensorFlow runs its
first operation, so commands make it first.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

from transferkit.errors import ConfigError

DISTRIBUTIONS = ("mirrored", "multi_worker")


def make_strategy(distribute: str | None, choices: tuple[str, ...] = DISTRIBUTIONS) -> Any:
    """The ``tf.distribute`` strategy for ``distribute`` (one of ``choices``); None for the
    default device."""
    if distribute is None:
        return None
    if distribute not in choices:
        raise ConfigError(f"unknown distribute {distribute!r}; valid: {', '.join(choices)}")
    import tensorflow as tf

    if distribute == "multi_worker":
        cluster = _tf_config().get("cluster")
        if not cluster:
            raise ConfigError(
                "--distribute multi_worker needs TF_CONFIG with the cluster and this worker's task, e.g. "
                '\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _tf_config() -> dict[str, Any]:
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError(f"TF_CONFIG is not JSON: {text[:80]!r}") from None


def is_chief(strategy: Any = None) -> bool:
    """Whether this process writes outputs: always, except on a multi-worker cluster's
    non-chief workers (the chief is task ``chief``, else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


@contextmanager
def out_dir(path: Path, chief: bool = True) -> Iterator[Path]:
    """Where this process writes a run folder: ``path`` on the chief; a temporary folder,
    deleted afterwards, on other workers (saving a model under a multi-worker strategy involves
    collective operations, so every worker must save, as TensorFlow's multi-worker guide says)."""
    if chief:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="transferkit-worker-") as tmp:
        yield Path(tmp) / "run"


def task_name(strategy: Any = None) -> str:
    """``worker1``, ``chief0``...: this process's task in a multi-worker cluster; ``local`` otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if getattr(resolver, "task_type", None) is None:
        return "local"
    return f"{resolver.task_type}{resolver.task_id}"


def replicas(strategy: Any = None) -> int:
    return strategy.num_replicas_in_sync if strategy is not None else 1


@contextmanager
def scope(strategy: Any = None) -> Iterator[None]:
    """The strategy's scope (models, optimizers and metrics made inside are distributed)."""
    with strategy.scope() if strategy is not None else nullcontext():
        yield


def _patch_keras_multi_worker_reduce() -> None:
    """Keras 3 averages each step's per-replica outputs across workers with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails for the scalar losses and metrics it
    reduces (https://github.com/keras-team/keras/issues/20585, open). For those, the mean over
    replicas is ``axis=None``; everything else goes to Keras unchanged."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "_transferkit", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or reduction not in ("auto", "mean"):
            return original(values, strategy, reduction)

        def mean(v: Any) -> Any:
            rank = v.values[0].shape.rank if isinstance(v, tf.distribute.DistributedValues) else v.shape.rank
            return strategy.reduce("MEAN", v, axis=None if rank == 0 else 0)

        return tf.nest.map_structure(mean, values)

    reduce_per_replica._transferkit = True  # type: ignore[attr-defined]
    trainer.reduce_per_replica = reduce_per_replica


def build_from_local_batch(model: Any, dataset: Any) -> None:
    """Lets ``model.fit``/``evaluate`` start under ``MultiWorkerMirroredStrategy``.

    Keras 3 builds a model before training from the first *distributed* batch, reduced across
    workers, and that reduction fails under this strategy
    (https://github.com/keras-team/keras/issues/20585, open). Building only needs the batch's
    shapes and dtypes, so this builds ``model`` from a local batch of ``dataset`` instead; the
    training itself is Keras' own. A no-op under any other strategy.
    """
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    if dataset is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    _patch_keras_multi_worker_reduce()
    batch = next(iter(dataset.take(1)))

    def build(iterator: Any = None, data_batch: Any = None) -> None:
        with strategy.scope():
            model._symbolic_build(data_batch=batch)

    model._maybe_symbolic_build = build
