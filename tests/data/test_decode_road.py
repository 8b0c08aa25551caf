"""One road from files to tensors: what prediction and feature extraction see of a file is exactly
what training saw, grey included."""

from __future__ import annotations

import csv
from pathlib import Path

import keras
import numpy as np
import pytest

from data_images import encode, exif_bytes, pattern, write
from transferkit.data import load_data

SIZE = 16


def _mixed_csv(root: Path) -> tuple[Path, list[str]]:
    """A CSV whose validation files cover every decoder route: a big JPEG (decoded at 1/8 and
    antialiased), an EXIF-rotated JPEG, a grey JPEG, a PNG with alpha, a non-square BMP."""
    val = [
        write(root / "big.jpg", encode(pattern(160, 160, 1), "JPEG")),
        write(root / "rotated.jpg", encode(pattern(48, 30, 2), "JPEG", exif=exif_bytes(6))),
        write(root / "grey.jpg", encode(pattern(40, 40, 3), "JPEG", mode="L")),
        write(root / "alpha.png", encode(np.dstack([pattern(30, 30, 4), np.full((30, 30), 128, np.uint8)]), "PNG")),
        write(root / "wide.bmp", encode(pattern(50, 20, 5), "BMP")),
    ]
    train = [write(root / f"train{i}.jpg", encode(pattern(24, 24, 10 + i), "JPEG")) for i in range(4)]
    rows = [(p, "ab"[i % 2], "val") for i, p in enumerate(val)] + [(p, "ab"[i % 2], "train") for i, p in enumerate(train)]
    path = root / "labels.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows((p.name, y, s) for p, y, s in rows)
    return path, [str(p) for p in val]


@pytest.mark.parametrize("channels", [3, 1])
def test_predict_and_features_see_exactly_what_training_saw(tmp_path: Path, channels: int) -> None:
    from transferkit.inference.predict import predict_files
    from transferkit.transfer.features import FeatureStore, file_features

    source, written = _mixed_csv(tmp_path / "data")
    data = load_data(source, SIZE, 2, augment=False, channels=channels, cache="memory")
    val_files = [f for f, s in zip(data.files, data.splits) if s == "val"]  # the order of data.val
    assert sorted(val_files) == sorted(written)
    trained = np.concatenate([x.numpy() for x, _ in data.val])
    assert trained.shape == (len(val_files), SIZE, SIZE, channels)

    # A model that outputs its input: prediction's tensors, bit for bit.
    image = keras.Input((SIZE, SIZE, channels))
    echo = keras.Model(image, keras.layers.Flatten()(image))
    predicted, done = predict_files(echo, val_files, batch_size=3)
    assert done == list(range(len(val_files)))
    np.testing.assert_array_equal(predicted.reshape(trained.shape), trained)

    features, ok, _ = file_features(echo, val_files, SIZE, FeatureStore("echo", "none"), batch_size=3, channels=channels)
    assert ok.all()
    np.testing.assert_array_equal(features.reshape(trained.shape), trained)
    if channels == 1:  # grey is the luma of the RGB pipeline's image, rounded
        rgb = np.concatenate([x.numpy() for x, _ in load_data(source, SIZE, 2, augment=False, cache="memory").val])
        luma = np.round(rgb @ np.array([0.2989, 0.5870, 0.1140], np.float32))[..., None]
        np.testing.assert_allclose(trained, luma, atol=1)


def test_every_dataset_the_package_iterates_runs_without_the_autotuner(tmp_path: Path) -> None:
    """With tf.data's autotuner on, deleting an iterator waits out the tuner's current sleep,
    which doubles over the iterator's life (up to its whole run time): at the end of every
    predict call and every Keras epoch and validation pass. Each road to a dataset turns it off."""
    import tensorflow as tf

    from transferkit.data import pipeline
    from transferkit.transfer.features import DataFeatures, cached_prefix_data, feature_datasets

    source, written = _mixed_csv(tmp_path / "data")
    data = load_data(source, SIZE, 2, augment=False, cache="memory")
    image = keras.Input((SIZE, SIZE, 3))
    prefix = keras.Model(image, keras.layers.Flatten()(image))
    features = DataFeatures((np.zeros((4, 3), np.float32), np.zeros(4, np.int32)), (np.zeros((2, 3), np.float32), np.zeros(2, np.int32)), 6)
    roads = {
        "decode_files": pipeline.decode_files(written, SIZE),
        "decode_files, batched": pipeline.decode_files(written, SIZE, batch_size=2),
        "load_data train": data.train,
        "load_data val": data.val,
        "feature_datasets": feature_datasets(features, 2)[0],
        "cached_prefix_data": cached_prefix_data(prefix, data.val, data.val, 2)[0],
    }
    default = tf.data.Dataset.range(3).map(lambda x: x + 1, num_parallel_calls=tf.data.AUTOTUNE)
    assert default.options().autotune.enabled is not False  # the check can fail: tf.data's default differs
    tuned = {name: ds.options().autotune.enabled for name, ds in roads.items()}
    assert tuned == {name: False for name in roads}
    assert len(list(roads["decode_files"])) == len(written)  # and they still run
