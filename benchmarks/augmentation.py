"""Augmentation benchmark: the Keras chain against the fused RandomAffine, one resample.

One run, the same batches (float32 0-255, 32x224x224x3 by default) mapped through tf.data as
``batched()`` does, timed side by side, interleaved ``--rounds`` times (median seconds per batch):

  (a) keras.layers.RandomFlip + RandomRotation + RandomZoom (the old default ``flip,rotation,zoom``);
  (b) transferkit's RandomAffine with the same flip, rotation and zoom: one matrix per image,
      one bilinear resample with ``keras.ops.image.affine_transform``;
  (c) ``tf.raw_ops.ImageProjectiveTransformV3`` alone on fixed matrices: the cost of one resample,
      the floor for (b).

Batches are made once and repeated from memory, so only the map is timed.

    PYTHONPATH=. python benchmarks/augmentation.py [--batches 8] [--rounds 5] [--size 224]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=8, help="batches per timed pass")
    p.add_argument("--rounds", type=int, default=5, help="interleaved passes of each")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from transferkit.data.augment import RandomAffine

    rotation, zoom = 0.05, 0.1  # pipeline.AUGMENTATIONS' defaults
    chain = keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=0),
        keras.layers.RandomRotation(rotation, seed=1),
        keras.layers.RandomZoom(zoom, seed=2),
    ])
    fused = RandomAffine(flip="horizontal", rotation=rotation, zoom=zoom, order=("flip", "rotation", "zoom"), seed=0)
    shift = tf.constant([[1.0, 0.02, 3.0, -0.02, 1.0, 2.0, 0.0, 0.0]] * args.batch_size)

    def one_resample(x: tf.Tensor) -> tf.Tensor:
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=shift, output_shape=tf.shape(x)[1:3], fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT"
        )

    shape = (args.batch_size, args.size, args.size, 3)
    batch = tf.constant(np.random.default_rng(0).uniform(0, 255, shape).astype("float32"))
    source = tf.data.Dataset.from_tensors(batch).repeat(args.batches)
    runs = {
        "(a) Keras RandomFlip + RandomRotation + RandomZoom": lambda x: chain(x, training=True),
        "(b) RandomAffine (flip, rotation, zoom fused)": lambda x: fused(x, training=True),
        "(c) one ImageProjectiveTransformV3 (the floor)": one_resample,
    }
    datasets = {name: source.map(fn, num_parallel_calls=1) for name, fn in runs.items()}

    def per_batch(ds: tf.data.Dataset) -> float:
        t = time.perf_counter()
        for _ in ds:
            pass
        return (time.perf_counter() - t) / args.batches

    for ds in datasets.values():  # trace and warm up
        per_batch(ds.take(2))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, ds in datasets.items():
            times[name].append(per_batch(ds))
        print(f"  round {r + 1}: " + ", ".join(f"{t[-1]:.3f}" for t in times.values()) + " s/batch", flush=True)

    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"\nbatch {shape}, float32, {args.batches} batches x {args.rounds} interleaved rounds, tf.data map (median)")
    for name, seconds in med.items():
        print(f"{name:<54} {seconds:7.3f} s/batch")
    a, b, c = med.values()
    print(f"\n(a)/(b) = {a / b:.2f}x faster fused; (b)/(c) = {b / c:.2f} (the fused layer over one bare resample)")


if __name__ == "__main__":
    main()
