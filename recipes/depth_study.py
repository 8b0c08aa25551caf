"""Researchers' recipe: the degradation study of He et al. 2015 (Fig. 6), plain vs residual.

Trains CIFAR ResNets of several depths twice each, once with shortcuts and once without
(``plain=True``), from scratch, and prints the final validation accuracies side by side. The
paper's finding: deeper plain nets train worse, deeper residual nets train better.

    python recipes/depth_study.py --data tfds:cifar10 --depths 20 56 --epochs 40
    python recipes/depth_study.py --data ./my_32px_folder --depths 8 14 --epochs 5

Writes ``depth_study.json`` (all histories) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from collections.abc import Sequence

import keras

import transferkit as tk


def run(
    data: str,
    depths: Sequence[int],
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.1,
    seed: int = 0,
    out: str = "runs/depth_study",
) -> dict[str, dict[str, float]]:
    """Trains ``resnet{depth}`` with and without shortcuts; returns final accuracies by name."""
    bundle = tk.load_data(data, 32, batch_size, 0.1, seed, augment=True, augment_spec="flip,crop")
    results: dict[str, dict[str, float]] = {}
    for depth in depths:
        for plain in (False, True):
            keras.utils.set_random_seed(seed)
            model = tk.create_model(
                f"resnet{depth}", num_classes=bundle.num_classes, input_shape=(32, 32, 3), plain=plain
            )
            model.compile(
                optimizer=keras.optimizers.SGD(lr, momentum=0.9, weight_decay=1e-4),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            history = model.fit(bundle.train, validation_data=bundle.val, epochs=epochs, verbose=2)
            name = f"{'plain' if plain else 'resnet'}-{depth}"
            results[name] = {
                "train_accuracy": float(history.history["accuracy"][-1]),
                "val_accuracy": float(history.history["val_accuracy"][-1]),
                "params": model.count_params(),
            }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "depth_study.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'network':<14} {'params':>10} {'train acc':>10} {'val acc':>10}")
    for name, r in results.items():
        print(f"{name:<14} {r['params']:>10,} {r['train_accuracy']:>10.4f} {r['val_accuracy']:>10.4f}")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="tfds:cifar10")
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/depth_study")
    args = p.parse_args(argv)
    run(args.data, args.depths, args.epochs, args.batch_size, args.lr, args.seed, args.out)


if __name__ == "__main__":
    main()
