"""One small finetuned run shared by the serving tests, and photos of their own sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from transferkit.cli import main
from transferkit.data import SAMPLE_DIR

SIZE = 96


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mobilenet_v1_025 with the bundled ImageNet weights, finetuned one epoch at 96 px on the
    bundled ants/bees sample (its split.csv has training and validation images)."""
    out = tmp_path_factory.mktemp("runs") / "ants"
    code = main([
        "finetune", "--base", "mobilenet_v1_025", "--data", "sample", "--out", str(out), "--image-size", str(SIZE),
        "--epochs", "1", "--fine-tune-epochs", "0", "--no-augment", "--seed", "0", "--quiet",
    ])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Photos of their own sizes: sample JPEGs, lossless PNG copies of some, and a JPEG whose
    EXIF says it is stored turned (orientation 6)."""
    root = tmp_path_factory.mktemp("photos")
    jpegs = sorted(SAMPLE_DIR.rglob("*.jpg"))[::6]
    files = []
    for i, jpeg in enumerate(jpegs):
        copy = root / f"{i}_{jpeg.name}"
        copy.write_bytes(jpeg.read_bytes())
        files.append(copy)
        if i % 2 == 0:
            with Image.open(jpeg) as image:
                image.convert("RGB").save(root / f"{i}_{jpeg.stem}.png")
            files.append(root / f"{i}_{jpeg.stem}.png")
    with Image.open(jpegs[0]) as image:
        exif = Image.Exif()
        exif[0x0112] = 6
        image.convert("RGB").save(root / "turned.jpg", quality=92, exif=exif.tobytes())
    files.append(root / "turned.jpg")
    return files
