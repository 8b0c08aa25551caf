"""Indexing and scanning benchmark, side by side with Keras' ``image_dataset_from_directory``.

1. Indexing a generated folder of 100,000 small images (10 classes): ``transferkit`` (list files
   and labels: ``index_source``) vs ``image_dataset_from_directory`` (which lists them too), each
   in a fresh process with TensorFlow loaded, reporting wall time and peak RSS. The fast header
   check (``probe_files``, which ``finetune`` adds on top) is reported on its own line, and so is
   hashing every file's contents: what keying the disk cache by content would add to every run
   (the cache is keyed by path, size and the stat times the index already has, at no cost).
2. The doctor's full scan (every file decoded) of hymenoptera_train vs one decoding pass of
   ``image_dataset_from_directory`` over it.

    PYTHONPATH=. python benchmarks/indexing.py [--n 100000] [--dir /tmp/tk_index_bench]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HYMENOPTERA = REPO.parent / "shared" / "data" / "hymenoptera_train"

CHILD = r"""
import json, os, resource, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, {repo!r})
import tensorflow as tf, keras
what, folder = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if what == "transferkit":
    from transferkit.data import index_source
    n = len(index_source(folder).files)
elif what == "transferkit+probe":
    from transferkit.data import index_source
    from transferkit.data.probe import probe_files
    index = index_source(folder)
    n = len(probe_files(index.files, index.sizes))
elif what == "transferkit+digest":
    import hashlib
    from concurrent.futures import ThreadPoolExecutor
    from transferkit.data import index_source
    index = index_source(folder)
    def digest(path):
        with open(path, "rb") as f:
            return hashlib.blake2b(f.read(), digest_size=16).digest()
    with ThreadPoolExecutor(8) as pool:
        n = len(list(pool.map(digest, index.files, chunksize=512)))
else:
    ds = keras.utils.image_dataset_from_directory(folder, image_size=(32, 32), batch_size=32, verbose=False)
    n = len(ds.file_paths)
seconds = time.perf_counter() - t
print(json.dumps({{"n": n, "seconds": seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}}))
"""


def make_folder(root: Path, n: int, classes: int = 10) -> Path:
    from PIL import Image

    marker = root / f".complete-{n}"
    if marker.exists():
        return root
    blobs = []
    for i in range(16):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (i * 16, 255 - i * 16, 128)).save(buf, "JPEG")
        blobs.append(buf.getvalue())
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"class{i % classes:02d}" / f"img{i:06d}.jpg").write_bytes(blobs[i % 16])
    marker.write_text("")
    return root


def child(what: str, folder: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(repo=str(REPO)), what, str(folder)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "tk_index_bench"))
    p.add_argument("--data", default=str(HYMENOPTERA))
    args = p.parse_args()

    t = time.perf_counter()
    folder = make_folder(Path(args.dir) / str(args.n), args.n)
    print(f"folder of {args.n} images: {folder} (ready in {time.perf_counter() - t:.1f} s)", flush=True)
    child("transferkit", folder)  # warm the file-system cache for both
    rows = {}
    for what in ("keras", "transferkit", "keras", "transferkit", "transferkit+probe", "transferkit+digest"):
        r = child(what, folder)
        best = rows.get(what)
        if best is None or r["seconds"] < best["seconds"]:
            rows[what] = r
    print(f"\nindexing {args.n} files (best of 2; fresh process with TensorFlow loaded each time)")
    labels = {
        "keras": "image_dataset_from_directory",
        "transferkit": "transferkit index_source",
        "transferkit+probe": "transferkit index + header check (finetune's fast doctor)",
        "transferkit+digest": "transferkit index + content hash (a content-keyed disk cache)",
    }
    for what, r in rows.items():
        print(f"  {labels[what]:<60} {r['seconds']:6.2f} s   peak RSS {r['peak_rss_gb']:.2f} GB   ({r['n']} files)")
    k, o = rows["keras"], rows["transferkit"]
    print(f"  ratio keras/transferkit: time {k['seconds'] / o['seconds']:.2f}x, memory {k['peak_rss_gb'] / o['peak_rss_gb']:.2f}x")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    import keras

    from transferkit.data.doctor import doctor

    def keras_pass() -> float:
        t = time.perf_counter()
        for _ in keras.utils.image_dataset_from_directory(args.data, batch_size=32, verbose=False):
            pass
        return time.perf_counter() - t

    def doctor_pass() -> float:
        t = time.perf_counter()
        doctor(args.data, verbose=False)
        return time.perf_counter() - t

    keras_pass(), doctor_pass()  # warm up: file cache, tracing
    k_t = min(keras_pass() for _ in range(3))
    d_t = min(doctor_pass() for _ in range(3))
    print(f"\nfull scan of {args.data} (best of 3)")
    print(f"  image_dataset_from_directory, one decoding pass              {k_t:6.2f} s")
    print(f"  transferkit doctor, every file decoded and checked           {d_t:6.2f} s   ({k_t / d_t:.2f}x)")


if __name__ == "__main__":
    main()
