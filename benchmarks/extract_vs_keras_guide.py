"""Extract mode against the Keras transfer-learning guide's recipe, in one run, on one split.

The guide (https://keras.io/guides/transfer_learning/) freezes a keras.applications base and
trains a new head with ``fit`` on ``image_dataset_from_directory`` batches: every epoch runs the
frozen base over every image again. transferkit's extract mode runs the base once, caches the
features and trains the head on them. Both train the head for the same number of epochs on the
same training/validation split (transferkit's seeded stratified split, laid out as folders for
``image_dataset_from_directory``) with the same MobileNet-0.25 ImageNet weights, at 224 px,
without augmentation (the guide's optional flip/rotation would stop any caching; see
docs/transfer.md).

Usage::

    PYTHONPATH=. python benchmarks/extract_vs_keras_guide.py [--data DIR] [--epochs 20] [--output result.json]

Timings are wall times from the dataset folder to a trained model (no run folder written for
either); the cold extract run starts from an empty feature cache, the warm one (a second run, a
tuner trial) reads it back.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BUNDLED = REPO / "transferkit" / "assets" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"


def guide_recipe(train_dir: Path, val_dir: Path, size: int, epochs: int, seed: int) -> tuple[float, float]:
    """The guide's recipe; returns (seconds, validation accuracy)."""
    import keras

    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    train_ds = keras.utils.image_dataset_from_directory(train_dir, image_size=(size, size), batch_size=32, seed=seed, verbose=False)
    val_ds = keras.utils.image_dataset_from_directory(val_dir, image_size=(size, size), batch_size=32, shuffle=False, verbose=False)
    base = keras.applications.MobileNet(alpha=0.25, weights="imagenet", include_top=False, input_shape=(size, size, 3))
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # MobileNet's preprocess_input
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(len(train_ds.class_names), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(val_ds, verbose=0)
    return seconds, float(accuracy)


def extract_mode(data: str, size: int, epochs: int, seed: int, cache_dir: Path) -> tuple[float, float, int]:
    from transferkit.runs.extract import ExtractConfig, train_extract

    start = time.perf_counter()
    config = ExtractConfig(data=data, image_size=size, epochs=epochs, seed=seed, feature_cache_dir=str(cache_dir))
    result = train_extract(config, verbose=0)
    return time.perf_counter() - start, result.val_accuracy, result.computed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hymenoptera_train"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the results as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tk-bench-"))
    (work / "keras" / "models").mkdir(parents=True)
    shutil.copy(BUNDLED, work / "keras" / "models" / BUNDLED.name)  # keras.applications finds it offline
    os.environ["KERAS_HOME"] = str(work / "keras")
    try:
        import tensorflow as tf

        from transferkit.data import load_data

        tf.reduce_sum(tf.ones((2, 2)))  # TensorFlow start-up is paid before either timer
        split = load_data(args.data, args.image_size, val_split=0.2, seed=args.seed, augment=False, cache="none")
        for f, label, s in zip(split.files, split.labels, split.splits):
            folder = work / "split" / s / split.class_names[label]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / Path(f).name).symlink_to(f)
            Path(f).read_bytes()  # both recipes start with the files in the page cache

        guide_s, guide_acc = guide_recipe(work / "split" / "train", work / "split" / "val", args.image_size, args.epochs, args.seed)
        cold_s, cold_acc, computed = extract_mode(args.data, args.image_size, args.epochs, args.seed, work / "features")
        warm_s, warm_acc, recomputed = extract_mode(args.data, args.image_size, args.epochs, args.seed, work / "features")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "images": {"train": split.count("train"), "val": split.count("val")},
        "epochs": args.epochs,
        "keras_guide": {"seconds": round(guide_s, 2), "val_accuracy": round(guide_acc, 4)},
        "extract_cold": {"seconds": round(cold_s, 2), "val_accuracy": round(cold_acc, 4), "features_computed": computed},
        "extract_warm": {"seconds": round(warm_s, 2), "val_accuracy": round(warm_acc, 4), "features_computed": recomputed},
        "speedup_cold": round(guide_s / cold_s, 2),
        "speedup_warm": round(guide_s / warm_s, 2),
        "load_average": os.getloadavg()[0],
    }
    print(f"{'recipe':<22}{'seconds':>9}{'val acc':>9}")
    print(f"{'keras guide (fit)':<22}{guide_s:>9.1f}{guide_acc:>9.3f}")
    print(f"{'extract, cold cache':<22}{cold_s:>9.1f}{cold_acc:>9.3f}")
    print(f"{'extract, warm cache':<22}{warm_s:>9.1f}{warm_acc:>9.3f}")
    print(f"speed-up: {result['speedup_cold']}x cold, {result['speedup_warm']}x warm "
          f"({args.epochs} epochs, {result['images']['train']} train / {result['images']['val']} val images)")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
