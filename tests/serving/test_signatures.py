"""A finetuned run's SavedModel served where transferkit cannot be imported: photos of their own
sizes and their bytes give what `transferkit predict` gives for the files."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from transferkit.cli import main


def _predict_cli(model: Path, files: list[Path], out: Path) -> dict[str, dict[str, float]]:
    """`transferkit predict --output` as {path: {label: probability}}."""
    assert main(["predict", *map(str, files), "--model", str(model), "--output", str(out)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    k = sum(1 for c in rows[0] if c.startswith("label_"))
    return {r["path"]: {r[f"label_{j}"]: float(r[f"probability_{j}"]) for j in range(1, k + 1)} for r in rows}


SERVE = textwrap.dedent(
    """
    import json, sys
    try:
        import transferkit
    except ImportError:
        pass
    else:
        raise SystemExit("transferkit is importable")
    import numpy as np, tensorflow as tf
    from PIL import Image
    folder, files, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    served = tf.saved_model.load(folder)
    result = {}
    for f in files:
        by_bytes = served.signatures["serve_bytes"](images_bytes=tf.constant([open(f, "rb").read()]))
        row = {k: v.numpy()[0].tolist() for k, v in by_bytes.items()}
        row["top_k_labels"] = [s.decode() for s in by_bytes["top_k_labels"].numpy()[0]]
        if f.endswith(".png"):  # lossless: these pixels are the ones predict decodes
            pixels = np.asarray(Image.open(f).convert("RGB"))[None]
            row["pixels"] = served.signatures["serving_default"](images=tf.constant(pixels, tf.float32))["probabilities"].numpy()[0].tolist()
            row["pixels_uint8"] = served.signatures["serving_uint8"](images=tf.constant(pixels))["probabilities"].numpy()[0].tolist()
        result[f] = row
    json.dump(result, open(out, "w"))
    """
)


def _serve_without_transferkit(folder: Path, files: list[Path], tmp_path: Path) -> dict:
    import json

    blocker = tmp_path / "blocker" / "transferkit"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("transferkit is not installed here")\n')
    env = {**os.environ, "PYTHONPATH": str(blocker.parent)}  # first on the path, before any install
    out = tmp_path / "served.json"
    result = subprocess.run(
        [sys.executable, "-c", SERVE, str(folder), json.dumps([str(f) for f in files]), str(out)],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_saved_model_serves_photos_and_bytes_as_predict_does(sample_run: Path, photos: list[Path], tmp_path: Path) -> None:
    labels = (sample_run / "labels.txt").read_text().split()
    predicted = _predict_cli(sample_run, photos, tmp_path / "predict.csv")
    served = _serve_without_transferkit(sample_run / "saved_model", photos, tmp_path)
    assert len(predicted) == len(served) == len(photos)
    pngs = 0
    for f in photos:
        want = np.array([predicted[str(f)][name] for name in labels])
        row = served[str(f)]
        probs = np.array(row["probabilities"])
        assert labels[int(probs.argmax())] == labels[int(want.argmax())], f
        np.testing.assert_allclose(probs, want, atol=1e-4, err_msg=str(f))
        assert row["top_k_labels"] == [labels[i] for i in np.argsort(-probs, kind="stable")][: len(row["top_k_labels"])]
        assert row["top_k_labels"][0] == labels[int(want.argmax())]
        np.testing.assert_allclose(row["top_k_scores"], np.sort(probs)[::-1][: len(row["top_k_scores"])], atol=1e-7)
        if "pixels" in row:
            pngs += 1
            np.testing.assert_allclose(row["pixels"], want, atol=1e-4, err_msg=str(f))
            np.testing.assert_allclose(row["pixels_uint8"], row["pixels"], atol=1e-7)
    assert pngs >= 2


def test_an_upright_photo_and_its_turned_copy_with_exif_serve_alike(sample_run: Path, photos: list[Path], tmp_path: Path) -> None:
    import tensorflow as tf
    from PIL import Image

    turned = next(f for f in photos if f.name == "turned.jpg")
    with Image.open(turned) as image:
        # Stored rotated by 90 degrees with orientation 6: what a phone writes. The upright copy
        # has no EXIF; both must give the same square (up to JPEG re-encoding).
        stored = image.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "stored.jpg", quality=95, exif=exif.tobytes())
    fn = tf.saved_model.load(str(sample_run / "saved_model")).signatures["serve_bytes"]
    probs = fn(images_bytes=tf.constant([turned.read_bytes(), (tmp_path / "stored.jpg").read_bytes()]))["probabilities"].numpy()
    np.testing.assert_allclose(probs[0], probs[1], atol=0.02)


def test_bytes_that_are_not_an_image_name_their_batch_index(sample_run: Path, photos: list[Path]) -> None:
    import tensorflow as tf

    fn = tf.saved_model.load(str(sample_run / "saved_model")).signatures["serve_bytes"]
    jpeg = next(f for f in photos if f.suffix == ".jpg").read_bytes()
    png = next(f for f in photos if f.suffix == ".png").read_bytes()
    corrupt = [
        jpeg[: len(jpeg) // 2],  # truncated in transfer: an image's header, half its data
        jpeg[:200] + bytes(range(256)) * 8,  # a JPEG header, then garbage
        png[:100],  # a PNG cut inside its first chunk
    ]
    for bad in (b"hello, not a photo", b"hi", b"", b"BM", *corrupt):
        batch = tf.constant([photos[0].read_bytes(), photos[1].read_bytes(), bad, photos[2].read_bytes()])
        with pytest.raises(tf.errors.InvalidArgumentError) as err:
            fn(images_bytes=batch)
        message = err.value.message.replace("\n", " ")
        assert "serve_bytes: image] [2] [of the batch cannot be decoded" in message, message
    # An empty batch is not an error: it classifies nothing, on every signature (on some CPUs
    # TensorFlow's oneDNN convolution returns an empty batch unchanged, which the model's next
    # layer cannot take).
    signatures = tf.saved_model.load(str(sample_run / "saved_model")).signatures
    classes = len((sample_run / "labels.txt").read_text().split())
    for name, empty in (
        ("serve_bytes", {"images_bytes": tf.constant([], tf.string)}),
        ("serving_default", {"images": tf.zeros([0, 50, 70, 3], tf.float32)}),
        ("serving_uint8", {"images": tf.zeros([0, 50, 70, 3], tf.uint8)}),
    ):
        out = signatures[name](**empty)
        assert out["probabilities"].shape == (0, classes), name
        assert out["top_k_labels"].shape == (0, min(5, classes)), name


def test_predict_and_evaluate_take_the_exported_saved_model(sample_run: Path, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from_run = _predict_cli(sample_run, photos, tmp_path / "run.csv")
    from_saved = _predict_cli(sample_run / "saved_model", photos, tmp_path / "saved.csv")
    assert from_run.keys() == from_saved.keys()
    for f in from_run:
        assert from_run[f].keys() == from_saved[f].keys()
        np.testing.assert_allclose(list(from_saved[f].values()), list(from_run[f].values()), atol=2e-6)
    assert "images/s" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(sample_run / "saved_model"), "--data", "sample", "--output", str(tmp_path / "m.json")]) == 0
    import json

    from transferkit.data import SAMPLE_DIR

    # Independently: the run's own predictions on every sample photo against its folder's class.
    files = sorted(SAMPLE_DIR.rglob("*.jp*g"))
    top1 = {f: max(p, key=p.get) for f, p in _predict_cli(sample_run, files, tmp_path / "all.csv").items()}
    right = sum(top1[str(f)] == f.parent.name for f in files)
    scores = json.loads((tmp_path / "m.json").read_text())
    assert scores["num_images"] == len(files) == 60
    assert scores["accuracy"] == pytest.approx(right / len(files))


def _documented_rest_body(files: list[Path]) -> dict:
    """The TF Serving request of docs/serving.md, its `$(base64 -w0 a.jpg)` and `b.png`
    replaced by the base64 of ``files``, parsed as the server parses it."""
    import base64
    import json
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    body = re.search(r"<<EOF\n(.*?)\nEOF", doc, re.S).group(1)
    names = re.findall(r"\$\(base64 -w0 ([^)]+)\)", body)
    assert names == ["a.jpg", "b.png"], names
    for name, f in zip(names, files):
        body = body.replace(f"$(base64 -w0 {name})", base64.b64encode(f.read_bytes()).decode())
    return json.loads(body)


def test_the_documented_rest_request_reaches_serve_bytes(sample_run: Path, photos: list[Path], tmp_path: Path) -> None:
    """docs/serving.md's TF Serving request, decoded by the REST API's rules (row format: each
    instance an object of named inputs, stacked into one batch per name; a ``{"b64": ...}``
    value is the base64 of binary data), names a signature and an input the SavedModel has and
    gives what `transferkit predict` gives for the two files."""
    import base64

    import tensorflow as tf

    files = [next(f for f in photos if f.suffix == ".jpg"), next(f for f in photos if f.suffix == ".png")]
    request = _documented_rest_body(files)
    served = tf.saved_model.load(str(sample_run / "saved_model"))
    fn = served.signatures[request["signature_name"]]
    columns: dict[str, list[bytes]] = {}
    for instance in request["instances"]:
        for name, value in instance.items():
            columns.setdefault(name, []).append(base64.b64decode(value["b64"]))
    assert set(columns) == set(fn.structured_input_signature[1])
    out = fn(**{name: tf.constant(values) for name, values in columns.items()})
    predicted = _predict_cli(sample_run, files, tmp_path / "predict.csv")
    for i, f in enumerate(files):
        top = out["top_k_labels"].numpy()[i][0].decode()
        assert top == max(predicted[str(f)], key=predicted[str(f)].get), f
