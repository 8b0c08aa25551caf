"""Tiny synthetic data for the search tests: two colour classes of 32x32 PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def make_images(root: Path, per_class: int = 8, size: int = 32) -> Path:
    """Noisy reddish and bluish squares: learnable in an epoch, yet not trivially separable."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, channel in (("red", 0), ("blue", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 160, (size, size, 3), dtype=np.uint8)
            img[..., channel] += 60
            Image.fromarray(img).save(root / cls / f"{cls}{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("tune_data") / "images")
