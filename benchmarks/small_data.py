"""The default fine-tuning against each small-data option, on the hymenoptera photos, in one run.

Every variant fine-tunes MobileNet-0.25 (the bundled ImageNet weights) on the same photos with
the same settings as ``transferkit finetune --data DIR`` (224 px, 10 head epochs and 5 fine-tuning
epochs, flip/rotation/zoom augmentation), changing one thing, for each of ``--seeds`` seeds. A
seed fixes the stratified validation split, the shuffling, the augmentation and the new head's
initial weights, so the variants of one seed are compared on the same held-out photos and the
differences are paired. Test-time augmentation needs no training: it is scored on the default
run's model (``flip``: the mean of the image and its mirror).

Reported: validation accuracy per seed, the mean and standard deviation over seeds, and the mean
paired difference from the default with its range. With about 50 validation photos a seed, one
photo is 2 points: read differences smaller than that as noise. The best variant is picked on the
same validation photos it is scored on, which flatters it.

Usage::

    PYTHONPATH=. python benchmarks/small_data.py [--data ../shared/data/hymenoptera_train] \\
        [--seeds 3] [--variants default,lr-auto,...] [--output result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name -> the options it changes (transferkit.finetune keywords); "tta-flip" is scored, not trained.
VARIANTS: dict[str, dict] = {
    "default": {},
    "lr-auto": {"lr": "auto"},
    "one-cycle": {"schedule": "one-cycle"},
    "cosine": {"schedule": "cosine"},
    "randaugment": {"augment_spec": "flip,randaugment"},  # RandAugment's operations replace rotation/zoom
    "mixup=0.2": {"augment_spec": "flip,rotation,zoom,mixup=0.2"},
    "cutmix=1.0": {"augment_spec": "flip,rotation,zoom,cutmix=1.0"},
    "label-smoothing=0.1": {"label_smoothing": 0.1},
    "ema=0.9": {"ema": 0.9},  # about 100 steps in all, 35 in phase 2: 0.999 would barely move
    "tta-flip": None,
}


def run_variant(name: str, seed: int, args: argparse.Namespace, work: Path) -> float:
    """Fine-tunes one variant with one seed; returns its validation accuracy."""
    import keras

    import transferkit as tk

    keras.backend.clear_session()
    out = work / f"{name}-{seed}"
    run = tk.finetune(
        base="mobilenet_v1_025", data=args.data, seed=seed, out=str(out), verbose=0, **VARIANTS[name]
    )
    accuracy = float(run.val_accuracy)
    if "tta-flip" in args.variants and name == "default":
        args.tta[seed] = float(run.evaluate(tta="flip")["tta_accuracy"])
    shutil.rmtree(out)
    return accuracy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hymenoptera_train"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--output", default=None, help="also write the results as JSON")
    args = parser.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if "default" not in args.variants:
        args.variants.insert(0, "default")  # every difference is measured against it
    args.tta = {}

    work = Path(tempfile.mkdtemp(prefix="tk-small-data-"))
    results: dict[str, list[float]] = {}
    started = time.perf_counter()
    try:
        for name in args.variants:
            if VARIANTS[name] is None:
                continue
            results[name] = []
            for seed in range(args.seeds):
                results[name].append(run_variant(name, seed, args, work))
                print(f"{name:>20}  seed {seed}: {results[name][-1]:.3f}", file=sys.stderr, flush=True)
        if "tta-flip" in args.variants:
            results["tta-flip"] = [args.tta[s] for s in range(args.seeds)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    default = results["default"]
    print(f"\nvalidation accuracy, {args.seeds} seeds ({Path(args.data).name}, mobilenet_v1_025, ImageNet weights)\n")
    print("| variant | per seed | mean | std | vs default (mean paired diff, range) |")
    print("|---|---|---|---|---|")
    summary = {}
    for name, scores in results.items():
        diffs = [a - b for a, b in zip(scores, default)]
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        summary[name] = {"per_seed": scores, "mean": statistics.mean(scores), "std": std, "diff": statistics.mean(diffs)}
        versus = "" if name == "default" else f"{statistics.mean(diffs):+.3f} ({min(diffs):+.3f} to {max(diffs):+.3f})"
        print(f"| {name} | {' '.join(f'{s:.3f}' for s in scores)} | {statistics.mean(scores):.3f} | {std:.3f} | {versus} |")
    best = max((n for n in summary if n != "default"), key=lambda n: summary[n]["mean"], default=None)
    if best:
        print(f"\nbest option: {best}, {summary[best]['mean']:.3f} against the default's {summary['default']['mean']:.3f} "
              f"({summary[best]['diff']:+.3f}; picked on the photos it is scored on)")
    print(f"total time: {time.perf_counter() - started:.0f} s")
    if args.output:
        Path(args.output).write_text(json.dumps({"seeds": args.seeds, "data": args.data, "results": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
