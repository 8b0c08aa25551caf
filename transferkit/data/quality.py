"""Image-quality measures and a perceptual hash of one decoded image, for the dataset doctor.

Everything is measured on the image as a model would see it: turned upright, grey, its shorter
side resized to :data:`ANALYSIS_SIDE` (Pillow and numpy only; a few milliseconds an image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Models take about 224 px; blur or noise invisible at that size does not reach them.
ANALYSIS_SIDE = 224
# Mean luma (0-255): below this a photo is underexposed to near black, above it washed out to
# near white (the 245 hymenoptera photos measure 47-240; their 240 is a render on white).
DARK_MEAN = 20.0
BRIGHT_MEAN = 245.0
# Variance of the Laplacian in the sharpest of 4x4 tiles: a photo whose subject is sharp has one
# tile with crisp edges even when its background is blurred on purpose (the hymenoptera photos
# measure 239 and up; a Gaussian blur of radius 3 brings them to 130 or less, radius 5 far under).
BLURRY_LAPLACIAN = 120.0
# Shannon entropy (bits) of the grey histogram: photos carry 4-8 bits (hymenoptera: 4.2 and up,
# but for a render on white at 1.7 and the "image not found" placeholder at 0.7); under 1 bit
# one tone fills most of the image (blank, placeholder).
LOW_ENTROPY_BITS = 1.0
# Longer side / shorter side: past 3 the centre square the pipeline crops keeps under a third.
EXTREME_ASPECT = 3.0
# The hash side: a 64-bit pHash (8x8 lowest frequencies of a 32x32 DCT).
HASH_SIZE = 8
_DCT_SIDE = 32


@dataclass(frozen=True)
class ImageStats:
    """What :func:`measure` found; ``phash`` is a 16-digit hex string."""

    brightness: float
    sharpness: float
    entropy: float
    aspect: float
    phash: str


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix(_DCT_SIDE)


def perceptual_hash(grey: Any) -> str:
    """64-bit pHash of a grey PIL image: signs of its lowest DCT frequencies about their median
    (robust to resizing, re-encoding and small crops)."""
    from PIL import Image

    small = np.asarray(grey.resize((_DCT_SIDE, _DCT_SIDE), Image.Resampling.LANCZOS), np.float64)
    low = (_DCT @ small @ _DCT.T)[:HASH_SIZE, :HASH_SIZE].ravel()
    bits = low[1:] > np.median(low[1:])  # the DC term says only how bright the image is
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def measure(image: Any) -> ImageStats:
    """Brightness, sharpness, entropy, aspect ratio and pHash of a loaded PIL image."""
    from PIL import Image, ImageOps

    width, height = image.size
    grey = ImageOps.exif_transpose(image) if image.getexif().get(0x0112, 1) not in (0, 1) else image
    if grey.mode in ("RGBA", "LA", "PA", "P") or "transparency" in grey.info:
        backdrop = Image.new("RGBA", grey.size, "white")
        grey = Image.alpha_composite(backdrop, grey.convert("RGBA"))
    grey = grey.convert("L")
    scale = ANALYSIS_SIDE / max(1, min(grey.size))
    if scale < 1:
        grey = grey.resize((max(1, round(grey.size[0] * scale)), max(1, round(grey.size[1] * scale))), Image.Resampling.BOX)
    pixels = np.asarray(grey, np.float64)
    counts = np.bincount(pixels.astype(np.uint8).ravel(), minlength=256)
    p = counts[counts > 0] / pixels.size
    entropy = float(-(p * np.log2(p)).sum())
    return ImageStats(
        brightness=float(pixels.mean()),
        sharpness=_sharpest_tile(pixels),
        entropy=entropy,
        aspect=max(width, height) / max(1, min(width, height)),
        phash=perceptual_hash(grey),
    )


def _sharpest_tile(pixels: np.ndarray, tiles: int = 4) -> float:
    """Variance of the 4-neighbour Laplacian in the sharpest of ``tiles x tiles`` tiles."""
    if min(pixels.shape) < 3:
        return float("nan")  # too small to tell (and flagged as tiny): never "blurry"
    lap = (
        pixels[:-2, 1:-1] + pixels[2:, 1:-1] + pixels[1:-1, :-2] + pixels[1:-1, 2:] - 4 * pixels[1:-1, 1:-1]
    )
    rows = np.array_split(np.arange(lap.shape[0]), min(tiles, lap.shape[0]))
    cols = np.array_split(np.arange(lap.shape[1]), min(tiles, lap.shape[1]))
    return float(max(lap[r[0] : r[-1] + 1, c[0] : c[-1] + 1].var() for r in rows for c in cols))


def quality_flags(stats: ImageStats) -> list[tuple[str, str]]:
    """``(kind, detail)`` for each quality threshold ``stats`` crosses."""
    flags = []
    if stats.brightness < DARK_MEAN:
        flags.append(("dark", f"very dark: mean brightness {stats.brightness:.0f} of 255 (< {DARK_MEAN:.0f})"))
    if stats.brightness > BRIGHT_MEAN:
        flags.append(("bright", f"very bright: mean brightness {stats.brightness:.0f} of 255 (> {BRIGHT_MEAN:.0f})"))
    if stats.entropy < LOW_ENTROPY_BITS:
        flags.append(("low_information", f"almost one colour: {stats.entropy:.1f} bits of grey levels (< {LOW_ENTROPY_BITS:.0f})"))
    elif stats.sharpness < BLURRY_LAPLACIAN:
        flags.append(("blurry", f"blurry: Laplacian variance {stats.sharpness:.0f} in its sharpest part (< {BLURRY_LAPLACIAN:.0f})"))
    if stats.aspect > EXTREME_ASPECT:
        flags.append(("extreme_aspect", f"aspect ratio {stats.aspect:.1f}:1 (> {EXTREME_ASPECT:.0f}:1): the centre crop loses most of it"))
    return flags


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def similar_pairs(hashes: list[str | None], max_distance: int) -> list[tuple[int, int, int]]:
    """``(i, j, distance)`` for every pair of hashes at most ``max_distance`` bits apart (i < j).

    All pairs are compared, vectorised: about a second per 10^8 pairs.
    """
    index = [i for i, h in enumerate(hashes) if h]
    if len(index) < 2:
        return []
    values = np.array([int(hashes[i], 16) for i in index], dtype=np.uint64)  # type: ignore[arg-type]
    pairs = []
    for a in range(len(values) - 1):
        dist = np.bitwise_count(values[a + 1 :] ^ values[a])
        for b in np.flatnonzero(dist <= max_distance):
            pairs.append((index[a], index[a + 1 + int(b)], int(dist[b])))
    return pairs
