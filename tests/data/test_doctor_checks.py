"""The doctor's image-quality flags, near-duplicates (within and across classes and splits), its
files (doctor.json, doctor.csv, doctor.md with thumbnails) and its refusal of --labels without
pretrained weights."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from transferkit.cli import main
from transferkit.data import SAMPLE_DIR, load_data
from transferkit.data.doctor import doctor

PHOTOS = sorted(SAMPLE_DIR.glob("*/*.jpg"))


def test_quality_flags_on_synthetic_images_and_none_on_photos(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("ants", "bees"):
        shutil.copytree(SAMPLE_DIR / name, root / name)
    photo = Image.open(PHOTOS[0]).convert("RGB")
    Image.new("RGB", (64, 64), "black").save(root / "ants" / "black.png")
    Image.new("RGB", (64, 64), (252, 252, 252)).save(root / "ants" / "white.png")
    photo.filter(ImageFilter.GaussianBlur(6)).save(root / "bees" / "blurred.jpg", quality=95)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1, 20, 3), np.uint8)).save(root / "bees" / "strip.png")

    report = doctor(str(root), verbose=False)
    flagged = {kind: {Path(r["path"]).name for r in rows} for kind, rows in report.quality.items() if rows}
    assert flagged == {
        "dark": {"black.png"},
        "bright": {"white.png"},
        "low_information": {"black.png", "white.png"},
        "blurry": {"blurred.jpg"},
        "extreme_aspect": {"strip.png"},
    }
    assert {Path(p).name for p in report.findings["small"]} == {"strip.png"}  # the tiny-image flag
    # The flag follows the measure: the blurred copy's sharpest tile is far below the original's.
    from transferkit.data.quality import BLURRY_LAPLACIAN, measure

    assert measure(photo).sharpness > 2 * BLURRY_LAPLACIAN
    assert not any(doctor("sample", verbose=False).quality.values())  # 60 ordinary photos: no flags


def _copies(photo: Path) -> dict[str, Image.Image]:
    im = Image.open(photo).convert("RGB")
    w, h = im.size
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=15)
    return {
        "resized": im.resize((w // 2, h // 2), Image.Resampling.BILINEAR),
        "reencoded": Image.open(io.BytesIO(buf.getvalue())),
        "cropped": im.crop((w // 50, h // 50, w - w // 50, h - h // 50)),  # 2% off each side
    }


def test_near_duplicates_within_and_across_classes_and_splits(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("ants", "bees"):
        shutil.copytree(SAMPLE_DIR / name, root / name)
    ants = sorted((root / "ants").glob("*.jpg"))
    bees = sorted((root / "bees").glob("*.jpg"))
    planted = {}  # copy -> (original, expected kind)
    for original, (kind, folder) in zip(
        [ants[0], ants[1], bees[2]],
        [("resized", "ants"), ("reencoded", "bees"), ("cropped", "bees")],
    ):
        copy = root / folder / f"copy_{kind}.jpg"
        _copies(original)[kind].save(copy, quality=90)
        planted[copy.name] = original.name

    report = doctor(str(root), verbose=False, near_duplicates=True, val_split=0.2, seed=0)
    found = {frozenset((Path(p["a"]["path"]).name, Path(p["b"]["path"]).name)): p for p in report.near_duplicates}
    assert set(found) == {frozenset(pair) for pair in planted.items()}  # all found, no pair of distinct photos
    kinds = {Path(p["a"]["path"]).name if "copy" in p["a"]["path"] else Path(p["b"]["path"]).name: p["kind"] for p in found.values()}
    assert kinds["copy_reencoded.jpg"] == "near_duplicate_across_classes"
    assert {kinds["copy_resized.jpg"], kinds["copy_cropped.jpg"]} <= {"near_duplicate_within_class", "near_duplicate_across_splits"}
    # The splits are those training makes (load_data with the same fraction and seed).
    data = load_data(str(root), 32, val_split=0.2, seed=0, augment=False, cache="none")
    split_of = dict(zip(data.files, data.splits))
    for pair in report.near_duplicates:
        a, b = pair["a"], pair["b"]
        assert (a["split"], b["split"]) == (split_of[a["path"]], split_of[b["path"]])
        assert pair["across_splits"] == (a["split"] != b["split"])
        if a["class"] == b["class"]:
            assert pair["kind"] == ("near_duplicate_across_splits" if pair["across_splits"] else "near_duplicate_within_class")


def test_near_duplicates_across_given_splits(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("ants", "bees"):
        shutil.copytree(SAMPLE_DIR / name, root / "train" / name)
        (root / "val" / name).mkdir(parents=True)
    for name in ("ants", "bees"):  # one ordinary validation photo per class, moved out of train
        first = sorted((root / "train" / name).glob("*.jpg"))[-1]
        first.rename(root / "val" / name / first.name)
    original = sorted((root / "train" / "bees").glob("*.jpg"))[0]
    _copies(original)["cropped"].save(root / "val" / "bees" / "leak.jpg", quality=90)

    report = doctor(str(root), verbose=False, near_duplicates=True)
    assert len(report.near_duplicates) == 1
    pair = report.near_duplicates[0]
    assert pair["kind"] == "near_duplicate_across_splits" and pair["across_splits"]
    assert {(Path(x["path"]).name, x["split"]) for x in (pair["a"], pair["b"])} == {(original.name, "train"), ("leak.jpg", "val")}


def test_cli_writes_json_csv_markdown_and_thumbnails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    for name in ("ants", "bees"):
        shutil.copytree(SAMPLE_DIR / name, root / name)
    Image.new("RGB", (64, 64), "black").save(root / "ants" / "black.png")
    _copies(PHOTOS[0])["resized"].save(root / "bees" / "copy.jpg")
    out = tmp_path / "report"
    assert main(["doctor", "--data", str(root), "--out", str(out), "--near-duplicates", "--no-labels", "--quiet"]) == 0
    assert "near_duplicate_across_classes" in capsys.readouterr().out

    report = json.loads((out / "doctor.json").read_text())
    with open(out / "doctor.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "kind", "detail", "suggested_class", "score"]
    expected = {("black.png", k) for k in ("dark", "low_information")} | {
        ("copy.jpg", "near_duplicate_across_classes"), (PHOTOS[0].name, "near_duplicate_across_classes")
    }
    assert {(Path(r["file"]).name, r["kind"]) for r in rows} == expected
    assert len(report["near_duplicates"]) == 1 and report["label_issues"] is None
    page = (out / "doctor.md").read_text()
    images = re.findall(r"!\[\]\((doctor_thumbnails/[0-9a-f]+\.jpg)\)", page)
    assert len(images) == len(rows)  # one thumbnail per row (black.png appears twice)
    assert len(set(images)) == 3
    for name in set(images):
        with Image.open(out / name) as thumb:
            assert thumb.format == "JPEG" and max(thumb.size) <= 128


def test_labels_without_pretrained_weights_is_exit_2_and_writes_nothing(
    tmp_path: Path, empty_keras_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import keras

    out = tmp_path / "report"
    assert main(["doctor", "--data", "sample", "--labels", "--base", "resnet20", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no 'imagenet' weights" in err[0] and "--base" in err[0], err
    assert not out.exists()

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)  # offline, and nothing in the Keras cache
    assert main(["doctor", "--data", "sample", "--labels", "--base", "resnet50", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs pretrained weights" in err[0] and "copy it into" in err[0], err
    assert not out.exists()
