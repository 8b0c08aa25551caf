"""What tf.data's autotuner costs a short training run: ``model.fit`` on transferkit's datasets as
they are (autotuning off, :func:`transferkit.data.pipeline.fixed_parallelism`) against the same
datasets with autotuning switched back on, side by side in one run.

Why it matters: with the autotuner on (TensorFlow 2.21), deleting an iterator waits for the
tuner's background thread to finish its current sleep, and its sleeps double over the
iterator's life, so a pass over the data can take up to twice its time. Keras makes a new
iterator for every epoch and every validation pass, and ``transferkit predict`` one per call.
The script also times that deletion alone (iterate a dataset, then delete its iterator).

Each round runs both ways once, in a new order each round; reported: the median and the best
seconds per ``fit`` (``--epochs`` epochs with validation), the ratio of the medians, and the
longest iterator deletion seen each way.

    PYTHONPATH=. python benchmarks/autotune_teardown.py [--data ../shared/data/hymenoptera_train] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hymenoptera_train"))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    import transferkit as tk
    from transferkit.data import load_data

    data = load_data(args.data, args.image_size, 32, augment=False, cache="memory")
    tuned = tf.data.Options()
    tuned.autotune.enabled = True
    ways = {
        "autotuning off (transferkit's datasets)": (data.train, data.val),
        "autotuning on (tf.data's default)": (data.train.with_options(tuned), data.val.with_options(tuned)),
    }
    model = tk.create_model("mobilenet_v1_025", num_classes=data.num_classes, weights="imagenet",
                            input_shape=(args.image_size,) * 2 + (3,))
    tk.freeze(model)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"{data.count('train')} training and {data.count('val')} validation images at {args.image_size} px, "
          f"mobilenet_v1_025 with a frozen base, {args.epochs} epochs per fit, {os.cpu_count()} CPUs")

    def fit(train: tf.data.Dataset, val: tf.data.Dataset) -> float:
        start = time.perf_counter()
        model.fit(train, validation_data=val, epochs=args.epochs, verbose=0)
        return time.perf_counter() - start

    def teardown(ds: tf.data.Dataset) -> float:
        iterator = iter(ds)
        for _ in iterator:
            pass
        start = time.perf_counter()
        del iterator
        return time.perf_counter() - start

    for train, val in ways.values():  # warm up: tracing
        fit(train, val)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    deletes: dict[str, list[float]] = {name: [] for name in ways}
    order = list(ways)
    for _ in range(args.rounds):
        random.shuffle(order)
        for name in order:
            seconds[name].append(fit(*ways[name]))
            deletes[name].append(teardown(ways[name][0]))
    for name in ways:
        print(f"{name:<42} fit {statistics.median(seconds[name]):6.2f} s median, {min(seconds[name]):6.2f} best; "
              f"longest iterator deletion {max(deletes[name]):5.2f} s  ({args.rounds} rounds)")
    off, on = (statistics.median(seconds[name]) for name in ways)
    print(f"fit time, autotuning on / off: {on / off:.2f}x (medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
