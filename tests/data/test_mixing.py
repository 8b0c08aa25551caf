"""`--augment` items from Keras' own layers: RandAugment per image, MixUp and CutMix per batch.

Each pipeline is compared with the same pipeline without augmentation (same seed, so the same
shuffled batches): what the mixing layers did is recovered from the pixels and checked against
the labels they produced.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from transferkit.data import load_data, pipeline
from transferkit.errors import ConfigError


def _first_batches(spec: str | None, size: int, batch_size: int) -> tuple[tuple, tuple]:
    """The first training and validation batches of the sample, as numpy arrays."""
    keras.utils.set_random_seed(0)
    data = load_data("sample", size, batch_size=batch_size, augment=spec is not None, augment_spec=spec, seed=0)
    train = next(iter(data.train))
    val = next(iter(data.val))
    return tuple(np.asarray(t) for t in train), tuple(np.asarray(t) for t in val)


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(2, dtype=np.float32)[labels]


def test_mixup_images_are_the_stated_mix_of_two_examples() -> None:
    (x, y), (_, plain_val_y) = _first_batches(None, 32, 16)
    (z, soft), (_, val_y) = _first_batches("mixup=0.4", 32, 16)
    assert soft.shape == (16, 2) and np.allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(val_y, _one_hot(plain_val_y))  # validation: one-hot, never mixed
    flat_x, flat_z = x.reshape(16, -1).astype(np.float64), z.reshape(16, -1).astype(np.float64)
    mixed_classes = 0
    for i in range(16):
        if np.allclose(flat_z[i], flat_x[i], atol=1e-3):  # paired with itself
            assert np.allclose(soft[i], _one_hot(y[i]), atol=1e-5)
            continue
        fits = []
        for j in range(16):
            d = flat_x[i] - flat_x[j]
            if j == i or not d.any():
                continue
            lam = float(np.dot(flat_z[i] - flat_x[j], d) / np.dot(d, d))
            fits.append((np.abs(flat_z[i] - flat_x[j] - lam * d).max(), lam, j))
        residual, lam, j = min(fits)
        assert residual < 1e-2, f"image {i} is no mix of two inputs"
        assert 0.0 <= lam <= 1.0
        assert np.allclose(soft[i], lam * _one_hot(y[i]) + (1 - lam) * _one_hot(y[j]), atol=1e-4)
        mixed_classes += y[i] != y[j]
    assert mixed_classes > 0  # the check above saw labels of two classes mixed


def test_cutmix_pastes_a_box_of_another_image_and_mixes_labels_by_its_area() -> None:
    size = 64
    (x, y), _ = _first_batches(None, size, 16)
    (z, soft), _ = _first_batches("cutmix=1.0", size, 16)
    assert np.allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    pasted = 0
    for i in range(16):
        changed = np.any(z[i] != x[i], axis=-1)
        if not changed.any():
            assert np.allclose(soft[i], _one_hot(y[i]), atol=0.07)
            continue
        rows, cols = np.where(changed)
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        sources = [j for j in range(16) if j != i and np.array_equal(z[i][box], x[j][box])]
        assert sources, f"image {i}: the changed box comes from no other image of the batch"
        outside = np.ones((size, size), bool)
        outside[box] = False
        assert np.array_equal(z[i][outside], x[i][outside])
        area = changed[box].size / size**2
        expected = (1 - area) * _one_hot(y[i]) + area * _one_hot(y[sources[0]])
        # Keras weighs the labels by the box's exact (fractional) area; the pasted pixels round it.
        assert np.allclose(soft[i], expected, atol=4 / size)
        pasted += 1
    assert pasted > 0


def test_randaugment_changes_training_images_not_validation_images() -> None:
    (x, y), (vx, vy) = _first_batches(None, 32, 16)
    (ax, ay), (avx, avy) = _first_batches("randaugment", 32, 16)
    assert np.array_equal(y, ay) and ay.ndim == 1  # same batch, labels stay integers
    changed = [not np.allclose(ax[i], x[i], atol=1.0) for i in range(16)]
    assert sum(changed) >= 8
    assert np.array_equal(avx, vx) and np.array_equal(avy, vy)


def test_mixing_items_are_parsed_and_refused_when_wrong() -> None:
    assert pipeline.parse_augment("flip,mixup=0.3,cutmix") == [("flip", "horizontal"), ("mixup", 0.3), ("cutmix", 1.0)]
    assert pipeline.build_augmentation("mixup") is None  # nothing per image
    assert [type(l).__name__ for l in pipeline.build_mixing("flip,cutmix,mixup")] == ["CutMix", "MixUp"]
    with pytest.raises(ConfigError, match="mixup takes a positive alpha"):
        pipeline.parse_augment("mixup=0")
    with pytest.raises(ConfigError, match="randaugment takes no value"):
        pipeline.parse_augment("randaugment=3")
