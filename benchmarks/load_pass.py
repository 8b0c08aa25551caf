"""Load-pass benchmark: is ``load_data``'s one pass over a folder as fast as Keras' own loader?

Side by side over the same folder, same image size, every file decoded once:

  (a) ``load_data`` (``augment=False``): index, header checks, split, building the datasets and
      the pass that decodes every image (train and validation) into the memory cache;
  (b) ``keras.utils.image_dataset_from_directory`` (no validation split): one full iteration.

Each side first runs once in a fresh process (what a command pays, tracing included), then
both run in this process, interleaved (ABBA order, so neither is always first), ``--repeats``
times each. Prints every time, the medians and (a)/(b) (target <= 1.0).

    PYTHONPATH=. python benchmarks/load_pass.py [--data ../shared/data/hymenoptera_train] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hymenoptera_train"
SIDES = {"a": "load_data: index + check + split + decode pass", "b": "image_dataset_from_directory: one pass"}


def run_side(side: str, data: str, size: int, batch_size: int) -> float:
    """Seconds for one pass of ``side`` (``"a"`` or ``"b"``)."""
    import keras
    import tensorflow as tf

    from transferkit.data import load_data

    start = time.perf_counter()
    if side == "a":
        load_data(data, size, batch_size, 0.2, 0, augment=False)
    else:
        ds = keras.utils.image_dataset_from_directory(data, image_size=(size, size), batch_size=batch_size, verbose=False)
        for _ in ds.prefetch(tf.data.AUTOTUNE):
            pass
    return time.perf_counter() - start


def fresh_process(side: str, args: argparse.Namespace) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--data", args.data, "--size", str(args.size), "--batch-size", str(args.batch_size), "--one", side],
        check=True, capture_output=True, text=True,
    )
    return float(out.stdout.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--one", choices=tuple(SIDES), help=argparse.SUPPRESS)  # one timed pass, for fresh_process
    args = p.parse_args()
    if args.one:
        print(run_side(args.one, args.data, args.size, args.batch_size))
        return

    fresh = {side: fresh_process(side, args) for side in SIDES}
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    for r in range(args.repeats):
        for side in ("a", "b") if r % 2 == 0 else ("b", "a"):
            times[side].append(run_side(side, args.data, args.size, args.batch_size))

    n = sum(1 for _, _, names in os.walk(args.data) for _ in names)
    print(f"{args.data}: {n} files, {args.size} px, batch {args.batch_size}, {args.repeats} interleaved repeats")
    for side, name in SIDES.items():
        runs = ", ".join(f"{t:.2f}" for t in times[side])
        print(f"({side}) {name:<50} fresh process {fresh[side]:5.2f} s; median {statistics.median(times[side]):5.2f} s ({runs})")
    ratio = statistics.median(times["a"]) / statistics.median(times["b"])
    print(f"(a)/(b): median {ratio:.2f}, fresh process {fresh['a'] / fresh['b']:.2f} (target <= 1.0)")


if __name__ == "__main__":
    main()
