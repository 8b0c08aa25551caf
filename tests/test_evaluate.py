"""`evaluate` scores over all of a trained model's classes, and decodes images as training does.

The model here is crafted rather than trained, so its prediction for each image is known: the
colour channel with the largest mean (red, green or blue), which the test recomputes from the
pixels with PIL.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.cli import main

SIZE = 32
MODEL_CLASSES = ["red", "green", "blue"]


def _colour_run(folder: Path) -> Path:
    """A run folder whose model predicts the channel with the largest mean pixel value."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(3, activation="softmax", name="predictions")
    model = keras.Model(inputs, dense(pooled))
    dense.set_weights([np.eye(3, dtype="float32") * 0.1, np.zeros(3, "float32")])
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    (folder / "labels.txt").write_text("".join(f"{c}\n" for c in MODEL_CLASSES))
    return folder


def _folder(root: Path, images: dict[str, list[tuple[int, int, int]]]) -> Path:
    """Class sub-folders of flat-colour PNGs, one image per RGB colour given."""
    for cls, colours in images.items():
        (root / cls).mkdir(parents=True)
        for i, rgb in enumerate(colours):
            Image.fromarray(np.full((SIZE, SIZE, 3), rgb, np.uint8)).save(root / cls / f"{i}.png")
    return root


def _dominant(path: Path) -> str:
    with Image.open(path) as image:
        return MODEL_CLASSES[int(np.asarray(image.convert("RGB"), np.float64).mean(axis=(0, 1)).argmax())]


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _colour_run(tmp_path_factory.mktemp("runs") / "colours")


def test_a_class_the_data_lacks_counts_as_wrong(colour_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The data has two of the model's three classes. The teal images in green/ are bluer than
    # green: the model predicts blue, which among the data's classes alone would have been green.
    teal = (0, 100, 200)
    data = _folder(tmp_path / "data", {"red": [(200, 0, 0)] * 3 + [(60, 200, 0)], "green": [(0, 200, 0)] * 2 + [teal] * 3})
    files = sorted(data.rglob("*.png"))
    right = [_dominant(f) == f.parent.name for f in files]
    assert teal[2] > teal[1] > teal[0] and sum(right) == 5  # 8 of 9 if blue could not be predicted

    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(colour_run), "--data", str(data), "--output", str(out), "--report", str(tmp_path / "r")]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == len(files)
    assert metrics["accuracy"] == pytest.approx(sum(right) / len(files), abs=1e-9)
    for cls in ("red", "green"):
        mine = [r for f, r in zip(files, right) if f.parent.name == cls]
        assert metrics["per_class_accuracy"][cls] == pytest.approx(sum(mine) / len(mine), abs=1e-9)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["class_names"] == MODEL_CLASSES
    assert report["confusion_matrix"] == [[3, 1, 0], [0, 2, 3], [0, 0, 0]]
    assert f"accuracy: {sum(right) / len(files):.4f} on {len(files)} images" in capsys.readouterr().out


def test_classes_the_model_lacks_are_one_line_naming_them(colour_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _folder(tmp_path / "data", {"purple": [(120, 0, 120)], "red": [(200, 0, 0)], "teal": [(0, 100, 200)]})
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--model", str(colour_run), "--data", str(data), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("transferkit evaluate: error:"), err
    assert "'purple'" in err[0] and "'teal'" in err[0] and "'red'" not in err[0]
    assert not out.exists()


def test_a_class_map_with_a_model_is_refused(colour_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _folder(tmp_path / "data", {"red": [(200, 0, 0)], "green": [(0, 200, 0)]})
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--model", str(colour_run), "--data", str(data), "--map", "red=n01440764", "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--map is for the unchanged ImageNet classifier" in err[0], err
    assert not out.exists()


def test_prediction_decodes_files_as_training_does(tmp_path: Path) -> None:
    """The pixels a model sees in `predict`/`evaluate` are those training gave it, for JPEGs large
    enough to be decoded at 1/8 scale, small ones, and PNGs."""
    import keras

    from transferkit.data import load_data
    from transferkit.inference import predict_files

    rng = np.random.default_rng(0)
    for cls, shapes in {"a": [(300, 400), (520, 260), (40, 50)], "b": [(260, 300), (700, 500), (33, 90)]}.items():
        (tmp_path / cls).mkdir()
        for i, (h, w) in enumerate(shapes):
            # Smooth gradients plus noise: resizing methods differ visibly on these.
            base = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.2, 1, h)[:, None, None]
            pixels = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.jpg", quality=90)
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(tmp_path / cls / "p.png")
    bundle = load_data(str(tmp_path), SIZE, batch_size=4, val_split=0.5, seed=0, augment=False, cache="none")
    # The validation pipeline keeps file order (training batches are shuffled).
    pixels = np.concatenate([x.numpy() for x, _ in bundle.val])
    files = [f for f, s in zip(bundle.files, bundle.splits) if s == "val"]
    assert len(files) == len(pixels) and any(f.endswith(".jpg") and Image.open(f).height >= 260 for f in files)
    identity = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten()])
    seen, done = predict_files(identity, files, batch_size=3)
    assert done == list(range(len(files)))
    np.testing.assert_array_equal(seen.reshape(pixels.shape), pixels)
