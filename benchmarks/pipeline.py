"""Input-pipeline benchmark: is the model ever waiting for data, and what does an epoch cost?

One run, one model (mobilenet_v1_025, ImageNet weights, 224 px, batch 32), the same training
images (80% of each class), timed side by side for each setting of what trains:

  (a) transferkit: ``load_data`` (reduced-size JPEG decode, cache, shuffle, prefetch); when part
      of the base is frozen and images are not augmented, ``finetune`` also computes the frozen
      layers once per image (:func:`transferkit.transfer.frozen_prefix`) and each epoch trains
      only the rest, which this times too;
  (b) the Keras guide's pipeline: ``image_dataset_from_directory`` + ``prefetch``, the whole
      model run every step;
  (c) ``model.fit`` on the same images already in memory as tensors, the whole model run every
      step: the compute limit of a pipeline that feeds images.

Settings, what trains and whether images are augmented: ``stage5+aug`` is ``transferkit
finetune``'s default phase-2 epoch (the last stage trains, flip/rotation/zoom on); ``stage5``
the same without augmentation (where the frozen-layer cache applies); ``all`` and ``all+aug``
train the whole base. With augmentation, (a) maps transferkit's fused augmentation and (b) the
same Keras layers the guide maps on, at the same strengths; (c) never augments (augmentation is
input-pipeline work, so the compute limit has none). Epochs are interleaved (one
epoch of each run in turn, in a new order every round, ``--rounds`` times) so that a busy moment
of the machine hits every run alike; each run's first epoch (tracing) is left out, and the
median and the minimum of the rest are reported (an epoch can take up to twice as long, even
inside one ``fit``, when tf.data's autotuner is on: deleting the epoch's iterator waits out the
tuner's sleep, see ``benchmarks/autotune_teardown.py``; the guide's pipeline has it on, and the
minimum is a run's undisturbed cost).
One-time costs (decode pass, frozen-layer pass) are reported separately.

    PYTHONPATH=. python benchmarks/pipeline.py [--data ../shared/data/hymenoptera_train] [--rounds 6]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hymenoptera_train"
SETTINGS = ("stage5+aug", "stage5", "all", "all+aug")


def fresh_model(size: int, trainable_from: str) -> Any:
    import keras

    from transferkit.models import create_model
    from transferkit.transfer import freeze

    keras.utils.set_random_seed(0)
    model = create_model("mobilenet_v1_025", num_classes=2, weights="imagenet", input_shape=(size, size, 3))
    freeze(model, trainable_from=trainable_from)
    return model


def compiled(model: Any) -> Any:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def epoch_runner(model: Any, data: Any, **kwargs: Any) -> Callable[[], float]:
    """One epoch of ``model.fit`` per call, timed (the train function is traced on the first)."""

    def run() -> float:
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0, **kwargs)
        return time.perf_counter() - start

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--rounds", type=int, default=6, help="epochs of every run, interleaved (the first is tracing)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"any of {', '.join(SETTINGS)}")
    args = p.parse_args()
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]

    import keras
    import numpy as np
    import tensorflow as tf

    from transferkit import transfer
    from transferkit.transfer import features
    from transferkit.data import load_data
    from transferkit.data.pipeline import DEFAULT_AUGMENT, parse_augment

    size, bs = args.size, args.batch_size
    once: dict[str, float] = {}

    t = time.perf_counter()
    ours = load_data(args.data, size, bs, 0.2, 0, augment=False)
    once["(a) load_data: index, check, decode pass"] = time.perf_counter() - t
    ours_aug = load_data(args.data, size, bs, 0.2, 0, augment=True)
    strengths = dict(parse_augment(DEFAULT_AUGMENT))

    def guide_ds(augment: bool) -> tf.data.Dataset:
        ds = keras.utils.image_dataset_from_directory(
            args.data, validation_split=0.2, subset="training", seed=0, image_size=(size, size), batch_size=bs, verbose=False
        )
        if augment:  # the guide's Keras layers, at transferkit's default strengths
            aug = keras.Sequential([
                keras.layers.RandomFlip(strengths["flip"], seed=0),
                keras.layers.RandomRotation(strengths["rotation"], seed=1),
                keras.layers.RandomZoom(strengths["zoom"], seed=2),
            ])
            ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    t = time.perf_counter()
    for _ in guide_ds(False):
        pass
    once["(b) image_dataset_from_directory: one decoding pass"] = time.perf_counter() - t

    x = np.concatenate([xb.numpy() for xb, _ in ours.train])
    y = np.concatenate([yb.numpy() for _, yb in ours.train])

    runs: dict[tuple[str, str], Callable[[], float]] = {}
    for setting in settings:
        trainable_from, _, suffix = setting.partition("+")
        augment = suffix == "aug"
        runs[(setting, "c")] = epoch_runner(
            compiled(fresh_model(size, trainable_from)), x, y=y, batch_size=bs, shuffle=True
        )
        model = compiled(fresh_model(size, trainable_from))
        split = None if augment else transfer.frozen_prefix(model)
        if split is None:
            runs[(setting, "a")] = epoch_runner(model, (ours_aug if augment else ours).train)
        else:
            t = time.perf_counter()
            cached, _ = features.cached_prefix_data(split[0], ours.train, None, bs, 0)
            once[f"(a) {setting}: frozen layers, one pass"] = time.perf_counter() - t
            runs[(setting, "a")] = epoch_runner(compiled(split[1]), cached)
        runs[(setting, "b")] = epoch_runner(compiled(fresh_model(size, trainable_from)), guide_ds(augment))

    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    order = list(runs)
    for r in range(args.rounds):
        for key in order:
            times[key].append(runs[key]())
        random.Random(r).shuffle(order)  # a new order every round: no run always follows the same one
        print(f"  round {r + 1}: " + ", ".join(f"{s}/{w} {times[(s, w)][-1]:.2f}" for s, w in runs), flush=True)

    print(f"\n{len(y)} training images, {size}px, batch {bs}, mobilenet_v1_025, {args.rounds} interleaved rounds")
    for name, seconds in once.items():
        print(f"  one-time  {name:<56} {seconds:6.2f} s")
    # Medians are the targets' measure; minimums show each run's cost when nothing interferes.
    for label, stat in (("median", statistics.median), ("minimum", min)):
        value = {key: stat(v[1:] or v) for key, v in times.items()}
        print(f"\n  {label:<9} {'(a) ours':>9} {'(b) guide':>10} {'(c) limit':>10} {'(b)/(a)':>8} {'(a)/(c)':>8}")
        for setting in settings:
            a, b, c = (value[(setting, w)] for w in "abc")
            print(f"  {setting:<9} {a:8.2f}s {b:9.2f}s {c:9.2f}s {b / a:7.2f}x {a / c:8.2f}")
    print("\n  targets: (b)/(a) >= 1.5x, (a)/(c) <= 1.10 (epoch seconds after the first round)")
    print(f"  +aug: (a) maps transferkit's augmentation ({DEFAULT_AUGMENT}); (b) the Keras layers, same strengths")


if __name__ == "__main__":
    main()
