"""Every supported format and colour mode decodes to upright 8-bit RGB, like Pillow does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from data_images import encode, exif_bytes, pattern, write
from transferkit.data.pipeline import jpeg_ratio, load_image
from transferkit.data.probe import FORMAT_CODES, probe_file

SIZE = 32


def reference(path: Path, size: int = SIZE) -> np.ndarray:
    """Pillow's view: EXIF transposed, alpha over white, centre square, resized."""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode.startswith("I"):  # Pillow clips 16-bit to 255 instead of scaling
        image = Image.fromarray((np.asarray(image, np.float64) / 257).round().astype(np.uint8))
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    image = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
    return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.float32)


def ours(path: Path, size: int = SIZE, static: bool = True) -> np.ndarray:
    probe = probe_file(str(path))
    assert probe.problem is None, probe.problem
    if static:
        ratio = jpeg_ratio(probe.width, probe.height, size) if probe.format == "jpeg" else None
        image = load_image(tf.constant(str(path)), size, probe.format_code, probe.orientation, ratio)
    else:
        image = load_image(tf.constant(str(path)), size, tf.constant(probe.format_code), tf.constant(probe.orientation))
    assert image.shape == (size, size, 3) and image.dtype == tf.uint8
    return image.numpy().astype(np.float32)


rgb = pattern(48, 40)
alpha = np.dstack([rgb, np.where(np.arange(48)[None, :] < 24, 0, 255).repeat(40, 0).astype(np.uint8)])
gray16 = (pattern(48, 40)[..., 0].astype(np.uint16) * 257)
CASES = {
    "jpeg": ("a.jpg", lambda: encode(rgb, "JPEG", quality=95)),
    "jpeg_grayscale": ("g.jpg", lambda: encode(rgb, "JPEG", "L", quality=95)),
    "jpeg_cmyk": ("c.jpg", lambda: encode(rgb, "JPEG", "CMYK", quality=95)),
    "jpeg_progressive": ("p.jpg", lambda: encode(rgb, "JPEG", quality=95, progressive=True)),
    "png": ("a.png", lambda: encode(rgb, "PNG")),
    "png_16bit": ("s.png", lambda: encode(gray16, "PNG")),
    "png_rgba": ("t.png", lambda: encode(alpha, "PNG")),
    "png_palette": ("q.png", lambda: encode(rgb, "PNG", "P")),
    "bmp": ("a.bmp", lambda: encode(rgb, "BMP")),
    "gif": ("a.gif", lambda: encode(rgb, "GIF")),
    "webp": ("a.webp", lambda: encode(rgb, "WEBP", lossless=True)),
    "webp_alpha": ("t.webp", lambda: encode(alpha, "WEBP", lossless=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_format_decodes_like_pillow(case: str, tmp_path: Path) -> None:
    name, data = CASES[case]
    path = write(tmp_path / name, data())
    expected = reference(path)
    for static in (True, False):
        got = ours(path, static=static)
        assert np.abs(got - expected).mean() < 6.0, (case, static)


def test_sixteen_bit_png_keeps_its_range(tmp_path: Path) -> None:
    path = write(tmp_path / "s.png", encode(gray16, "PNG"))
    assert Image.open(path).mode.startswith("I")
    got = ours(path)
    assert got.max() > 200 and np.allclose(got[..., 0], got[..., 1])


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(rgb).convert("P"), Image.fromarray(255 - rgb).convert("P")]
    buf = write(tmp_path / "anim.gif", b"")
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(buf).n_frames == 2
    assert np.abs(ours(buf) - reference(buf)).mean() < 6.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int, tmp_path: Path) -> None:
    path = write(tmp_path / "o.jpg", encode(pattern(64, 40, 3), "JPEG", quality=95, exif=exif_bytes(orientation)))
    assert probe_file(str(path)).orientation == orientation
    expected = reference(path)
    for static in (True, False):
        got = ours(path, static=static)
        assert np.abs(got - expected).mean() < 6.0, (orientation, static)
        # Upright means it differs from the stored pixels whenever the tag says so.
        if orientation != 1:
            stored = np.asarray(Image.open(path).convert("RGB").crop((12, 0, 52, 40)).resize((SIZE, SIZE)), np.float32)
            assert np.abs(got - stored).mean() > 10.0


def test_portrait_photo_is_upright(tmp_path: Path) -> None:
    """A phone photo stored landscape with orientation 6 comes out portrait-upright: the top of
    the scene (red) is at the top."""
    scene = np.zeros((60, 40, 3), np.uint8)  # upright portrait: red top half, blue bottom half
    scene[:30] = (255, 0, 0)
    scene[30:] = (0, 0, 255)
    stored = np.rot90(scene, k=1)  # what the camera stores; orientation 6 rotates it back
    path = write(tmp_path / "portrait.jpg", encode(np.ascontiguousarray(stored), "JPEG", quality=95, exif=exif_bytes(6)))
    got = ours(path, size=16)
    assert got[:4, :, 0].mean() > 200 and got[:4, :, 2].mean() < 60
    assert got[-4:, :, 2].mean() > 200 and got[-4:, :, 0].mean() < 60


@pytest.mark.parametrize(("side", "ratio"), [(100, 1), (250, 2), (500, 4), (1200, 8)])
def test_big_jpegs_decode_at_reduced_size(side: int, ratio: int, tmp_path: Path) -> None:
    path = write(tmp_path / "big.jpg", encode(pattern(side + 20, side, 5), "JPEG", quality=95))
    probe = probe_file(str(path))
    assert (probe.width, probe.height, probe.channels) == (side + 20, side, 3)
    assert jpeg_ratio(probe.width, probe.height, 64) == ratio
    assert np.abs(ours(path, size=64) - reference(path, 64)).mean() < 6.0


def test_probe_finds_unusable_files(tmp_path: Path) -> None:
    cases = {
        "empty.jpg": (b"", "empty"),
        "text.jpg": (b"hello, not an image at all", "not an image"),
        "scan.jpg": (encode(rgb, "TIFF"), "unsupported format (TIFF)"),
        "cut.jpg": (b"\xff\xd8\xff\xe0\x00\x10JFIF", "corrupt JPEG header"),
    }
    for name, (data, reason) in cases.items():
        probe = probe_file(str(write(tmp_path / name, data)))
        assert probe.problem is not None and reason in probe.problem, (name, probe)
    assert probe_file(str(write(tmp_path / "ok.webp", encode(rgb, "WEBP")))).format_code == FORMAT_CODES["webp"]
