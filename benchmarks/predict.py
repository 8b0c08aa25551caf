"""Images/s of ``transferkit predict`` on a folder against the Keras guide's way, in one run.

Three ways to get class probabilities for every image of a folder from the same model:

- ``transferkit predict``: what the command does after loading the model, from the folder to
  probabilities (``collect_images`` + ``predict_files``: the decode road with reduced-size JPEG
  decoding, then the model as one traced function);
- the Keras guide's way: ``keras.utils.image_dataset_from_directory`` + ``model.predict``;
- ``model.predict`` on the images already decoded into an in-memory tensor: the model alone,
  the ceiling for any road from files.

Each is run once to warm up (tracing, file cache), then ``--repeats`` times interleaved. The
median and the best of the repeats are reported, and the overall rate (all the repeats' images
over all their time: the throughput of calling it again and again), with the ratios of each: on
a machine shared with other work, a repeat that ran while something else had the cores is slower
by up to 2x, and the best of several repeats is the estimate such interference cannot inflate
(the convention of Python's ``timeit``); the overall rate counts every slow call, as a user
running it many times pays them all (Keras' roads pay tf.data's autotuner, whose iterators can
take up to as long again to delete, :func:`transferkit.data.pipeline.fixed_parallelism`). Each
repeat's CPU time (this process, all threads) is reported too: work done per image, which a core
taken away by the host does not change; and on Linux each repeat's CPU steal (time the
hypervisor gave to other guests, from /proc/stat). Usage::

    PYTHONPATH=. python benchmarks/predict.py [--data DIR] [--model RUN_OR_KERAS] [--image-size 224]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU ticks from /proc/stat (Linux), None elsewhere. Steal is time the
    hypervisor gave this machine's CPUs to other guests: a repeat with much of it ran slower for
    reasons outside this program."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hymenoptera_train"))
    parser.add_argument("--model", default=None, help="a run folder or .keras file (default: MobileNet-0.25, ImageNet base, new 2-class head)")
    parser.add_argument("--image-size", type=int, default=224, help="without --model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", default=None, help="also write the results as JSON")
    args = parser.parse_args()

    import keras
    import numpy as np

    import transferkit as tk
    from transferkit.inference import collect_images, predict_files
    from transferkit.runs.folder import open_run

    if args.model is None:
        model = tk.create_model("mobilenet_v1_025", num_classes=2, weights="imagenet", input_shape=(args.image_size,) * 2 + (3,))
        path = Path(tempfile.mkdtemp(prefix="tk-bench-")) / "model.keras"
        model.save(path)
        args.model = str(path)
    model = open_run(args.model).model
    size = model.input_shape[1]
    files = collect_images([args.data])
    print(f"{len(files)} images in {args.data}, model {model.name} at {size} px, batch {args.batch_size}, {os.cpu_count()} CPUs")

    def transferkit_predict() -> int:
        probs, done = predict_files(model, collect_images([args.data]), args.batch_size)
        return len(probs)

    def keras_guide() -> int:
        ds = keras.utils.image_dataset_from_directory(
            args.data, image_size=(size, size), batch_size=args.batch_size, shuffle=False, label_mode=None, verbose=False
        )
        return len(model.predict(ds, verbose=0))

    decoded = keras.utils.image_dataset_from_directory(
        args.data, image_size=(size, size), batch_size=None, shuffle=False, label_mode=None, verbose=False
    )
    in_memory = np.stack(list(decoded.as_numpy_iterator())).astype("float32")

    def keras_in_memory() -> int:
        return len(model.predict(in_memory, batch_size=args.batch_size, verbose=0))

    ways = {"transferkit predict": transferkit_predict, "guide: image_dataset_from_directory + model.predict": keras_guide,
            "model.predict on in-memory tensors": keras_in_memory}
    times: dict[str, list[float]] = {name: [] for name in ways}
    steal: dict[str, list[float]] = {name: [] for name in ways}  # share of CPU time stolen, per repeat
    cpu: dict[str, list[float]] = {name: [] for name in ways}  # this process's CPU seconds, per repeat
    counts = {name: way() for name, way in ways.items()}  # warm up
    for _ in range(args.repeats):
        for name, way in ways.items():
            ticks = cpu_ticks()
            start, start_cpu = time.perf_counter(), time.process_time()
            way()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            after = cpu_ticks()
            if ticks and after and after[1] > ticks[1]:
                steal[name].append((after[0] - ticks[0]) / (after[1] - ticks[1]))
    rate = {name: counts[name] / statistics.median(times[name]) for name in ways}
    best = {name: counts[name] / min(times[name]) for name in ways}
    overall = {name: counts[name] * len(times[name]) / sum(times[name]) for name in ways}  # all repeats' images / their time
    cpu_per_image = {name: statistics.median(cpu[name]) / counts[name] for name in ways}
    for name in ways:
        print(
            f"{name:<55} {rate[name]:8.1f} images/s median, {best[name]:6.1f} best, {overall[name]:6.1f} overall, "
            f"{1000 * cpu_per_image[name]:5.1f} CPU ms/image"
            f"  ({args.repeats} repeats, {counts[name]} images"
            + (f"; CPU steal per repeat {min(steal[name]):.0%} to {max(steal[name]):.0%})" if steal[name] else ")")
        )
    names = list(ways)
    ratios = {
        stat: {"guide": r[names[0]] / r[names[1]], "in_memory": r[names[0]] / r[names[2]]}
        for stat, r in (("median", rate), ("best", best), ("overall", overall))
    }
    ratios["cpu"] = {  # images per CPU second, relative (higher is better, like the others)
        "guide": cpu_per_image[names[1]] / cpu_per_image[names[0]],
        "in_memory": cpu_per_image[names[2]] / cpu_per_image[names[0]],
    }
    for stat, r in ratios.items():
        label = "per CPU second" if stat == "cpu" else stat
        print(f"{label:>14}: transferkit predict / guide {r['guide']:.2f}x, / in-memory model.predict {r['in_memory']:.2f}x")
    if args.output:
        result = {
            "images_per_second": rate, "best_images_per_second": best, "overall_images_per_second": overall,
            "ratios": ratios, "seconds": times,
            "cpu_seconds": cpu, "steal": steal,
        }
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
