"""`transferkit doctor`: every kind of problem in a messy folder, text and doctor.json."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_images import encode, exif_bytes, make_class_folder, pattern, write
from transferkit.cli import main


def animated_gif() -> bytes:
    frames = [Image.fromarray(pattern(40, 40, s)).convert("P") for s in (1, 2)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    root = make_class_folder(tmp_path / "messy", {"cats": 12, "dogs": 3}, size=40)
    rgb = pattern(40, 40, 77)
    jpeg = encode(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG", quality=95)
    files = {
        "cats/zero.jpg": b"",
        "cats/text.jpg": b"I am a text file with an image name",
        "cats/scan.jpg": encode(rgb, "TIFF"),
        "cats/cut.jpg": jpeg[: len(jpeg) // 2],
        "cats/gray.jpg": encode(rgb, "JPEG", "L"),
        "cats/cmyk.jpg": encode(rgb, "JPEG", "CMYK"),
        "cats/deep.png": encode(rgb[..., 0].astype(np.uint16) * 257, "PNG"),
        "cats/clear.png": encode(np.dstack([rgb, np.full((40, 40), 128, np.uint8)]), "PNG"),
        "cats/turned.jpg": encode(rgb, "JPEG", exif=exif_bytes(6)),
        "cats/moving.gif": animated_gif(),
        "cats/tiny.png": encode(pattern(8, 8), "PNG"),
        "cats/photo.tiff": encode(rgb, "TIFF"),
        "dogs/notes.txt": b"not an image by name",
    }
    for name, data in files.items():
        write(root / name, data)
    shutil.copy(root / "cats" / "000.jpg", root / "cats" / "000_again.jpg")  # within a class
    shutil.copy(root / "cats" / "001.jpg", root / "dogs" / "also_a_dog.jpg")  # across classes
    return root


def test_doctor_reports_every_problem(messy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "doctor.json"
    assert main(["doctor", "--data", str(messy), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())

    def names(rows: list) -> set[str]:  # noqa: ANN001
        return {Path(r["path"] if isinstance(r, dict) else r).name for r in rows}

    p, f = report["problems"], report["findings"]
    assert names(p["zero_byte"]) == {"zero.jpg"}
    assert names(p["non_image"]) == {"text.jpg"}
    assert names(p["unsupported_format"]) == {"scan.jpg", "photo.tiff"}
    assert names(p["truncated"]) == {"cut.jpg"} and not p["unreadable"]
    assert names(report["skipped_by_name"]) == {"notes.txt"}
    assert any("TIFF" in r["detail"] for r in p["unsupported_format"])
    assert {"gray.jpg"} <= names(f["grayscale"]) and "deep.png" in names(f["grayscale"])
    assert names(f["cmyk"]) == {"cmyk.jpg"}
    assert names(f["sixteen_bit"]) == {"deep.png"}
    assert names(f["alpha"]) == {"clear.png"}
    assert names(f["exif_rotated"]) == {"turned.jpg"}
    assert names(f["animated"]) == {"moving.gif"}
    assert names(f["small"]) == {"tiny.png"}
    assert [names(g) for g in report["duplicates_within_class"]] == [{"000.jpg", "000_again.jpg"}]
    assert [names(g) for g in report["duplicates_across_classes"]] == [{"001.jpg", "also_a_dog.jpg"}]
    usable_cats = 12 + 1 + 7  # generated + copy + gray/cmyk/deep/clear/turned/moving/tiny
    assert report["counts"] == {"cats": usable_cats, "dogs": 4}
    assert report["imbalance"] == pytest.approx(usable_cats / 4)
    assert "imbalanced" in text and "ACROSS classes" in text and "truncated" in text


def test_doctor_on_real_photos(hymenoptera: Path, tmp_path: Path) -> None:
    from transferkit.data.doctor import doctor

    report = doctor(str(hymenoptera), verbose=False)
    assert report.counts == {"ants": 124, "bees": 121} and report.num_problems == 0
    assert report.num_files == 245


def test_doctor_bad_source_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "d.json"), "--quiet"])
    assert code == 2 and not (tmp_path / "d.json").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_doctor_on_tfds_mock(tmp_path: Path) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    from transferkit.data.doctor import doctor

    with tfds.testing.mock_data(num_examples=4):
        report = doctor("tfds:oxford_flowers102", data_dir=str(tmp_path), verbose=False)
    # The mock has no split metadata, so only train is read (validation would be carved from it).
    assert len(report.class_names) == 102 and sum(report.counts.values()) == 4
