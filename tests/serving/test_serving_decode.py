"""The SavedModel's in-graph decode gives, for every format, colour mode, size and EXIF
orientation the decode road handles, the very square :func:`pipeline.decode_files` gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from data.data_images import encode, exif_bytes, pattern, write
from transferkit.data import SAMPLE_DIR, pipeline
from transferkit.runs.serving import exif_orientation, square_from_bytes, square_from_pixels

SIZE = 40


def _files(root: Path) -> list[Path]:
    files = []
    wide = pattern(150, 90, 1)
    for o in range(1, 9):  # every orientation, behind a small and a big (ratio 8) decode
        files.append(write(root / f"o{o}.jpg", encode(wide, "JPEG", exif=exif_bytes(o))))
        files.append(write(root / f"big{o}.jpg", encode(pattern(400, 330, o), "JPEG", quality=90, exif=exif_bytes(o))))
    rgba = np.dstack([pattern(60, 80, 2), np.full((80, 60), 90, np.uint8)])
    files.append(write(root / "alpha.png", encode(rgba, "PNG")))
    files.append(write(root / "grey.jpg", encode(pattern(70, 50, 3), "JPEG", mode="L")))
    files.append(write(root / "cmyk.jpg", encode(pattern(70, 50, 4), "JPEG", mode="CMYK")))
    files.append(write(root / "anim.gif", encode(pattern(50, 50, 5), "GIF")))
    files.append(write(root / "bmp.bmp", encode(pattern(33, 47, 6), "BMP")))
    files.append(write(root / "webp.webp", encode(pattern(64, 48, 7), "WEBP")))
    files.append(write(root / "small.png", encode(pattern(20, 30, 8), "PNG")))  # upscaled
    return files + sorted(SAMPLE_DIR.rglob("*.jpg"))[:8]


@pytest.mark.parametrize("channels", [3, 1])
def test_bytes_decode_as_the_decode_road_does(tmp_path: Path, channels: int) -> None:
    files = [str(f) for f in _files(tmp_path)]
    road = {int(i): x.numpy() for i, x in pipeline.decode_files(files, SIZE, channels)}
    assert len(road) == len(files)
    serve = tf.function(lambda data: square_from_bytes(data, SIZE, channels))
    for i, f in enumerate(files):
        served = serve(tf.constant(Path(f).read_bytes())).numpy()
        np.testing.assert_array_equal(served, road[i], err_msg=f)


def test_exif_orientation_in_graph_reads_what_the_probe_reads(tmp_path: Path) -> None:
    from transferkit.data.probe import probe_file

    for f in _files(tmp_path):
        if f.suffix == ".jpg":
            assert int(exif_orientation(tf.constant(f.read_bytes()))) == probe_file(str(f)).orientation, f


def test_decoded_pixels_square_as_the_tensor_road_does() -> None:
    image = pattern(130, 70, 9)
    expected = pipeline.decoded_tensor_dataset(
        tf.data.Dataset.from_tensor_slices((tf.constant([0]), image[None])), SIZE, lambda x: x, cache=None
    )
    (_, want), = list(expected)
    np.testing.assert_array_equal(square_from_pixels(tf.constant(image, tf.float32), SIZE, 3).numpy(), want.numpy())
