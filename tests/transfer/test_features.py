"""The feature cache and the extract command (small data, small images)."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.models import build_model
from transferkit.runs.extract import ExtractConfig, train_extract
from transferkit import transfer
from transferkit.transfer import features
from transferkit.cli import main
from transferkit.data import SAMPLE_DIR


@pytest.fixture
def few(tmp_path: Path) -> Path:
    """6 photos per class of the bundled sample, copied (so a test may change one)."""
    data = tmp_path / "few"
    for cls in ("ants", "bees"):
        (data / cls).mkdir(parents=True)
        for f in sorted((SAMPLE_DIR / cls).iterdir())[:6]:
            shutil.copy(f, data / cls / f.name)
    return data


def _store(model: keras.Model, folder: Path, weights: str = "imagenet") -> features.FeatureStore:
    extractor, _ = transfer.split_head(model)
    key = features.extractor_key(extractor, features.weights_identity("mobilenet_v1_025", weights, 0))
    return features.FeatureStore(key, "disk", folder)


def test_disk_cache_is_keyed_by_file_contents(few: Path, tmp_path: Path) -> None:
    model = build_model("mobilenet_v1_025", 2, "imagenet", 96)
    extractor, _ = transfer.split_head(model)
    files = sorted(str(p) for p in few.rglob("*.jpg"))
    first, ok, computed = features.file_features(extractor, files, 96, _store(model, tmp_path / "c"))
    assert ok.all() and computed == len(files) and first.shape == (len(files), 256)
    np.testing.assert_allclose(first[:2], extractor.predict(_images(files[:2], 96), verbose=0), rtol=1e-4, atol=1e-4)

    features._MEMORY.clear()  # a new process: only the disk cache is left
    again, _, computed = features.file_features(extractor, files, 96, _store(model, tmp_path / "c"))
    assert computed == 0 and np.array_equal(again, first)

    shutil.copy(files[1], files[0])  # known contents under another name: nothing to compute
    renamed, _, computed = features.file_features(extractor, files, 96, _store(model, tmp_path / "c"))
    assert computed == 0 and np.array_equal(renamed[0], first[1])
    with open(files[2], "ab") as f:  # new contents (bytes after the JPEG's end): computed again
        f.write(b"\0" * 16)
    _, _, computed = features.file_features(extractor, files, 96, _store(model, tmp_path / "c"))
    assert computed == 1

    other_size = build_model("mobilenet_v1_025", 2, "imagenet", 128)
    assert _store(other_size, tmp_path / "c").key != _store(model, tmp_path / "c").key
    assert _store(model, tmp_path / "c", weights=None).key != _store(model, tmp_path / "c").key


def _images(files: list[str], size: int) -> np.ndarray:
    from transferkit.data import pipeline

    return np.stack([pipeline.load_image(f, size).numpy() for f in files]).astype("float32")


def test_extract_command_then_predict_and_evaluate(
    few: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    cache = tmp_path / "cache"
    args = ["extract", "--data", str(few), "--out", str(run), "--image-size", "96", "--epochs", "3", "--feature-cache-dir", str(cache), "--val-split", "0.34"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "features of 12 images computed, 0 read from the cache" in err
    assert {"model.keras", "saved_model", "labels.txt", "metrics.json", "config.json", "split.csv"} <= {p.name for p in run.iterdir()}
    assert main(args[:4] + [str(tmp_path / "run2")] + args[5:]) == 0
    assert "features of 0 images computed, 12 read from the cache" in capsys.readouterr().err

    assert main(["predict", str(few / "ants"), "--model", str(run), "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all(l.split("\t")[1].split(" ")[0] in ("ants", "bees") for l in lines)
    assert main(["evaluate", "--data", str(few), "--model", str(run)]) == 0
    printed = capsys.readouterr().out  # the run's 8 training images are never scored
    assert "left out 8 images the model trained on" in printed and "on 4 images" in printed


def test_augmentation_turns_caching_off_and_says_so(few: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = ExtractConfig(data=str(few), image_size=64, epochs=1, augment=True, val_split=0.34, feature_cache_dir=str(tmp_path / "c"))
    before = build_model("mobilenet_v1_025", 2, "imagenet", 64)
    result = train_extract(config, verbose=1)
    assert "cannot be cached" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    for layer in transfer.base_layers(before):
        for a, b in zip(layer.get_weights(), result.model.get_layer(layer.name).get_weights()):
            assert np.array_equal(a, b), layer.name
