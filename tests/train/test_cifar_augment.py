"""``--augment cifar``: the ResNet/WRN papers' 4-pixel zero pad, random crop back to size and
horizontal flip; checked here against every shift and flip it may make."""

from __future__ import annotations

import numpy as np

from transferkit.data.pipeline import build_augmentation, parse_augment


def _candidates(image: np.ndarray, pad: int) -> list[np.ndarray]:
    size = image.shape[0]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[dy : dy + size, dx : dx + size]
            out += [crop, crop[:, ::-1]]
    return out


def test_cifar_is_pad_crop_and_flip() -> None:
    assert parse_augment("cifar") == [("pad", 4.0), ("flip", "horizontal")]
    augment = build_augmentation("cifar", seed=0, image_size=16)
    rng = np.random.default_rng(0)
    images = rng.uniform(1, 255, (8, 16, 16, 3)).astype("float32")  # no zeros: padding shows
    seen = set()
    for _ in range(4):
        out = np.asarray(augment(images, training=True))
        assert out.shape == images.shape
        for image, got in zip(images, out):
            match = [i for i, c in enumerate(_candidates(image, 4)) if np.array_equal(c, got)]
            assert match, "not a 4-pixel shift (zero filled) of the image, flipped or not"
            seen.add(match[0])
    assert len(seen) > 4  # the crops differ
