"""A pretrained head search with transferkit against plain keras-tuner, in one run, on one split.

Both search the same head space (``--space-preset head``: dropout, one hidden layer or none,
learning rate) over a frozen MobileNet-0.25 with the bundled ImageNet weights, with keras-tuner's
RandomSearch, the same number of trials and epochs, the same seed, batch size, image size and
training/validation split (transferkit's seeded stratified split), without augmentation.

* (A) ``transferkit.tune(..., weights="imagenet", space="head")``: the base is frozen and runs
  over the images once per search; every trial trains only the head on the cached features. It
  starts from an empty feature cache and its time includes writing the run folder (model.keras
  and the SavedModel export).
* (B) what a user of plain keras-tuner writes: a ``build(hp)`` that makes the model
  (``transferkit.models.create_model`` + ``transferkit.transfer.freeze``) and compiles it, and
  ``tuner.search`` on the image datasets (decoded once, kept in memory): the frozen base runs
  over every training and validation image in every epoch of every trial. Its time ends with the
  best model rebuilt and evaluated; nothing is written.

Usage::

    PYTHONPATH=. python benchmarks/tune_cached_features.py [--trials 10] [--epochs 10] \
        [--data ../shared/data/hymenoptera_train] [--image-size 224] [--output result.json]

Wall times from the dataset folder to the best model, TensorFlow's start-up paid before either
timer; (A) runs first, so any first-use cost in the process counts against it. A warm (A), a
second search over the same files reading every feature back from the cache, is timed last.
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
BASE = "mobilenet_v1_025"


def transferkit_search(data: str, args: argparse.Namespace, work: Path, name: str) -> tuple[float, list[dict], int]:
    """(A): returns (seconds, every trial's values and score, features computed)."""
    from transferkit.tuning import tune

    start = time.perf_counter()
    result = tune(
        BASE, data, "head", max_trials=args.trials, epochs=args.epochs, image_size=args.image_size,
        batch_size=args.batch_size, weights="imagenet", out=work / name, seed=args.seed,
        augment=False, feature_cache_dir=work / "features", verbose=0,
    )
    seconds = time.perf_counter() - start
    config = json.loads((work / name / "config.json").read_text())
    trials = json.loads((work / name / "trials.json").read_text())
    return seconds, [{"values": t["hyperparameters"], "score": t["score"]} for t in trials], int(config["features_computed"])


def plain_keras_tuner(data: str, args: argparse.Namespace, work: Path) -> tuple[float, list[dict]]:
    """(B): returns (seconds, every trial's values and score)."""
    import keras
    import keras_tuner

    from transferkit.data import load_data
    from transferkit.models import create_model
    from transferkit.transfer import freeze
    from transferkit.tuning import preset_space

    space = preset_space("head", BASE)
    start = time.perf_counter()
    bundle = load_data(data, args.image_size, args.batch_size, 0.2, args.seed, augment=False, cache="memory")

    def build(hp: keras_tuner.HyperParameters) -> keras.Model:
        dropout = hp.Float("dropout", space["dropout"]["min"], space["dropout"]["max"], step=space["dropout"]["step"])
        units = hp.Choice("hidden_units", space["hidden_units"])
        lr = hp.Float("lr", space["lr"]["min"], space["lr"]["max"], sampling="log")
        model = create_model(
            BASE, bundle.num_classes, "imagenet", (args.image_size, args.image_size, 3),
            dropout=dropout, hidden_units=(units,) if units else (),
        )
        freeze(model)
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    keras.utils.set_random_seed(args.seed)
    tuner = keras_tuner.RandomSearch(
        build, objective="val_accuracy", max_trials=args.trials, seed=args.seed,
        directory=str(work), project_name="plain", overwrite=True,
    )
    tuner.search(bundle.train, validation_data=bundle.val, epochs=args.epochs, verbose=0)
    best = tuner.get_best_models(1)[0]
    best.evaluate(bundle.val, verbose=0)
    seconds = time.perf_counter() - start
    trials = [tuner.oracle.trials[k] for k in sorted(tuner.oracle.trials)]
    return seconds, [{"values": t.hyperparameters.values, "score": t.score} for t in trials]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hymenoptera_train"))
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the results as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tk-tune-bench-"))
    try:
        import tensorflow as tf

        from transferkit.data import load_data

        tf.reduce_sum(tf.ones((2, 2)))  # TensorFlow start-up is paid before either timer
        split = load_data(args.data, args.image_size, val_split=0.2, seed=args.seed, augment=False, cache="none")
        for f in split.files:
            Path(f).read_bytes()  # both searches start with the files in the page cache

        a_s, a_trials, computed = transferkit_search(args.data, args, work, "cold")
        b_s, b_trials = plain_keras_tuner(args.data, args, work)
        warm_s, warm_trials, recomputed = transferkit_search(args.data, args, work, "warm")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def best(trials: list[dict]) -> float:
        return max(t["score"] for t in trials)

    def mean(trials: list[dict]) -> float:
        return sum(t["score"] for t in trials) / len(trials)

    a_acc, b_acc, warm_acc = best(a_trials), best(b_trials), best(warm_trials)
    same_values = [t["values"] for t in a_trials] == [t["values"] for t in b_trials]

    result = {
        "images": {"train": split.count("train"), "val": split.count("val")},
        "trials": args.trials,
        "epochs": args.epochs,
        "image_size": args.image_size,
        "transferkit_tune": {"seconds": round(a_s, 1), "best_val_accuracy": round(a_acc, 4),
                             "mean_val_accuracy": round(mean(a_trials), 4), "features_computed": computed, "trials": a_trials},
        "plain_keras_tuner": {"seconds": round(b_s, 1), "best_val_accuracy": round(b_acc, 4),
                              "mean_val_accuracy": round(mean(b_trials), 4), "trials": b_trials},
        "transferkit_tune_warm": {"seconds": round(warm_s, 1), "best_val_accuracy": round(warm_acc, 4), "features_computed": recomputed},
        "same_hyperparameters_per_trial": same_values,
        "ratio_b_over_a": round(b_s / a_s, 2),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
    }
    print(f"{'search':<40}{'seconds':>9}{'best val acc':>14}{'mean over trials':>18}")
    print(f"{'(A) transferkit tune, cold cache':<40}{a_s:>9.1f}{a_acc:>14.3f}{mean(a_trials):>18.3f}")
    print(f"{'(B) plain keras-tuner, base every trial':<40}{b_s:>9.1f}{b_acc:>14.3f}{mean(b_trials):>18.3f}")
    print(f"{'(A) again, warm cache':<40}{warm_s:>9.1f}{warm_acc:>14.3f}{mean(warm_trials):>18.3f}")
    print("trial  " + "  ".join(f"{i:>5}" for i in range(len(a_trials))))
    print("(A)    " + "  ".join(f"{t['score']:>5.3f}" for t in a_trials))
    print("(B)    " + "  ".join(f"{t['score']:>5.3f}" for t in b_trials))
    print(f"same sampled hyperparameters in every trial: {'yes' if same_values else 'no'}")
    print(f"B/A: {result['ratio_b_over_a']}x ({args.trials} trials x {args.epochs} epochs, "
          f"{result['images']['train']} train / {result['images']['val']} val images at {args.image_size} px; "
          f"features computed: {computed} cold, {recomputed} warm)")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
