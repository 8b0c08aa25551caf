"""Helpers that build small image files: every format, colour mode and defect the data layer handles."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Blocky colour pattern, asymmetric in both axes, that survives JPEG compression."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    ys = np.arange(height) * 4 // height
    xs = np.arange(width) * 4 // width
    return blocks[ys][:, xs]


def encode(array: np.ndarray, fmt: str, mode: str | None = None, **kwargs: object) -> bytes:
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_class_folder(root: Path, counts: dict[str, int], size: int = 24, fmt: str = "JPEG") -> Path:
    """``root/<class>/<i>.jpg`` with distinct images (different seeds, so no duplicates)."""
    seed = 0
    for name, n in counts.items():
        for i in range(n):
            seed += 1
            ext = {"JPEG": "jpg", "PNG": "png"}[fmt]
            write(root / name / f"{i:03d}.{ext}", encode(pattern(size, size, seed), fmt))
    return root

