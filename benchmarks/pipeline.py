"""Input-pipeline benchmark: is the model ever waiting for data?

One run, one model (mobilenet_v1_025, ImageNet weights, 224 px, batch 32; by default a fine-tune
epoch with the whole base trainable, ``--unfreeze none`` for the recipe's phase 1 with a frozen
base), the same training images (80% of each class), timed side by side:

  (a) transferkit's pipeline (``load_data``: reduced-size JPEG decode, cache, shuffle, prefetch),
      with its default augmentation and without any;
  (b) the Keras guide's pipeline: ``image_dataset_from_directory`` + ``prefetch``, with the same
      augmentation mapped on as the guide does, and without;
  (c) ``model.fit`` on the same images already in memory as tensors: the compute limit.

Epoch time is the median of the epochs after the first (the first includes tracing and, for
(a), nothing else: decoding happens in ``load_data``'s cache pass, timed separately).

    PYTHONPATH=. python benchmarks/pipeline.py [--data ../shared/data/hymenoptera_train] [--epochs 4]
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
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hymenoptera_train"


class EpochTimer:
    def __init__(self) -> None:
        import keras

        outer = self

        class _Cb(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):  # noqa: ANN001
                outer.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):  # noqa: ANN001
                outer.times.append(time.perf_counter() - outer.start)

        self.times: list[float] = []
        self.callback = _Cb()

    def steady(self) -> float:
        return statistics.median(self.times[1:] or self.times)


UNFREEZE = "all"


def fresh_model(size: int):  # noqa: ANN201
    import keras

    from transferkit import registry
    from transferkit.transfer import freeze

    keras.utils.set_random_seed(0)
    model = registry.create_model("mobilenet_v1_025", num_classes=2, weights="imagenet", input_shape=(size, size, 3))
    freeze(model, trainable_from=None if UNFREEZE == "none" else UNFREEZE)
    model.compile(optimizer=keras.optimizers.Adam(1e-4 if UNFREEZE != "none" else 1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def timed_fit(x, epochs: int, size: int, **kwargs) -> list[float]:  # noqa: ANN001
    timer = EpochTimer()
    fresh_model(size).fit(x, epochs=epochs, verbose=0, callbacks=[timer.callback], **kwargs)
    return timer.times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-augment-runs", action="store_true", help="skip the runs with augmentation")
    p.add_argument(
        "--unfreeze",
        default="all",
        help="what of the base trains: 'all' (default, a fine-tune epoch), a stage name, or 'none' (phase 1)",
    )
    args = p.parse_args()
    global UNFREEZE
    UNFREEZE = args.unfreeze

    import keras
    import numpy as np
    import tensorflow as tf

    from transferkit.data import load_data
    from transferkit.data.pipeline import build_augmentation, DEFAULT_AUGMENT

    size, bs, epochs = args.size, args.batch_size, args.epochs
    results: dict[str, float] = {}

    t = time.perf_counter()
    ours = load_data(args.data, size, bs, 0.2, 0, augment=False)
    results["(a) load_data: index + check + decode pass"] = time.perf_counter() - t
    ours_aug = load_data(args.data, size, bs, 0.2, 0, augment=True)

    def guide_ds(augment: bool) -> tf.data.Dataset:
        ds = keras.utils.image_dataset_from_directory(
            args.data, validation_split=0.2, subset="training", seed=0, image_size=(size, size), batch_size=bs, verbose=False
        )
        if augment:
            aug = build_augmentation(DEFAULT_AUGMENT, 0, size)
            ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    t = time.perf_counter()
    for _ in guide_ds(False):
        pass
    results["(b) image_dataset_from_directory: one decoding pass"] = time.perf_counter() - t

    x = np.concatenate([xb.numpy() for xb, _ in ours.train])
    y = np.concatenate([yb.numpy() for _, yb in ours.train])
    n = len(x)

    runs = [
        ("(c) model.fit on in-memory tensors (compute limit)", lambda: timed_fit(x, epochs, size, y=y, batch_size=bs, shuffle=True)),
        ("(a) transferkit pipeline, no augmentation", lambda: timed_fit(ours.train, epochs, size)),
        ("(b) image_dataset_from_directory + prefetch, no augmentation", lambda: timed_fit(guide_ds(False), epochs, size)),
    ]
    if not args.no_augment_runs:
        runs += [
            (f"(a) transferkit pipeline, augment {DEFAULT_AUGMENT}", lambda: timed_fit(ours_aug.train, epochs, size)),
            (f"(b) image_dataset_from_directory + prefetch, augment {DEFAULT_AUGMENT}", lambda: timed_fit(guide_ds(True), epochs, size)),
        ]
    epoch_times: dict[str, list[float]] = {}
    for name, run in runs:
        epoch_times[name] = run()
        print(f"  {name}: epochs {', '.join(f'{s:.2f}' for s in epoch_times[name])} s", flush=True)

    c = statistics.median(epoch_times[runs[0][0]][1:])
    print(f"\n{n} training images, {size}px, batch {bs}, mobilenet_v1_025, base trainable from: {args.unfreeze}, {epochs} epochs each")
    for name, seconds in results.items():
        print(f"{name:<64} {seconds:7.2f} s")
    for name, times in epoch_times.items():
        med = statistics.median(times[1:])
        print(f"{name:<64} {med:7.2f} s/epoch  ({med / c:.2f}x compute limit)")
    a = statistics.median(epoch_times[runs[1][0]][1:])
    b = statistics.median(epoch_times[runs[2][0]][1:])
    print(f"\nno augmentation: (b)/(a) = {b / a:.2f}x (target >= 1.5x); (a)/(c) = {a / c:.2f} (target <= 1.10)")
    if not args.no_augment_runs:
        a2 = statistics.median(epoch_times[runs[3][0]][1:])
        b2 = statistics.median(epoch_times[runs[4][0]][1:])
        print(f"augmentation:    (b)/(a) = {b2 / a2:.2f}x (target >= 1.5x); (a)/(c) = {a2 / c:.2f}")


if __name__ == "__main__":
    main()
