"""The doctor's files: ``doctor.json`` (the whole report), ``doctor.csv`` (one row per finding:
file, kind, detail, suggested class, score) and ``doctor.md`` (the findings with thumbnails,
small JPEGs in ``doctor_thumbnails/`` beside it)."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

THUMBNAIL_SIDE = 128  # pixels, the longer side: enough to see what a photo shows
MAX_THUMBNAILS = 500  # a page of more than this is not read; the CSV lists every finding
CSV_COLUMNS = ("file", "kind", "detail", "suggested_class", "score")


def output_paths(out: str | Path) -> dict[str, Path]:
    """Where the files go: a folder ``out`` gets ``doctor.json``, ``doctor.csv``, ``doctor.md`` and
    ``doctor_thumbnails/``; ``out`` ending in ``.json`` names the JSON file, and the others are
    written beside it under its stem."""
    out = Path(out).expanduser()
    folder, stem = (out.parent, out.stem) if out.suffix.lower() == ".json" else (out, "doctor")
    return {
        "json": folder / f"{stem}.json", "csv": folder / f"{stem}.csv", "md": folder / f"{stem}.md",
        "thumbnails": folder / f"{stem}_thumbnails",
    }


def write_thumbnail(source: str, target: Path) -> bool:
    """A small upright RGB JPEG of ``source``; False when it cannot be decoded."""
    from PIL import Image, ImageOps

    try:
        with Image.open(source) as im:
            im.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            small = ImageOps.exif_transpose(im).convert("RGB")
            small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            small.save(target, "JPEG", quality=85)
        return True
    except Exception:  # noqa: BLE001 - a broken file has no thumbnail; the row still says why
        return False


def _markdown(report: Any, rows: list[dict[str, Any]], thumbs: dict[str, str]) -> str:
    lines = [f"# Dataset doctor: {report.source}", ""]
    lines.append(f"{report.num_files} files, {len(report.class_names)} classes: "
                 + ", ".join(f"{c} {n}" for c, n in report.counts.items()) + f"; imbalance {report.imbalance:.2f}.")
    if report.label_issues is not None:
        check = report.label_check
        lines += ["", f"Label check: confident learning on {check.get('base')} features ({check.get('image_size')} px), "
                  f"{check.get('folds')}-fold linear probe accuracy {check.get('probe_accuracy', 0):.3f}; "
                  f"{len(report.label_issues)} likely label error(s), most confident first."]
    if not rows:
        lines += ["", "No findings."]
        return "\n".join(lines) + "\n"
    lines += ["", f"{len(rows)} finding(s); every one is also a row of the CSV.", ""]
    lines += ["| image | file | kind | detail | suggested class | score |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        cell = f"![]({thumbs[row['file']]})" if row["file"] in thumbs else ""
        detail = str(row["detail"]).replace("|", "\\|")
        lines.append(f"| {cell} | `{row['file']}` | {row['kind']} | {detail} | {row['suggested_class']} | {row['score']} |")
    return "\n".join(lines) + "\n"


def write_outputs(report: Any, out: str | Path) -> dict[str, Path]:
    """Writes the report's JSON, CSV, Markdown page and thumbnails (replacing the doctor's own
    earlier files there, nothing else); returns their paths."""
    paths = output_paths(out)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    rows = report.rows()
    paths["json"].write_text(json.dumps(report.to_json(), indent=2) + "\n")
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    if paths["thumbnails"].exists():
        shutil.rmtree(paths["thumbnails"])
    paths["thumbnails"].mkdir()
    thumbs: dict[str, str] = {}
    for row in rows:
        file = row["file"]
        if file in thumbs or len(thumbs) >= MAX_THUMBNAILS:
            continue
        name = hashlib.blake2b(file.encode(), digest_size=8).hexdigest() + ".jpg"
        if write_thumbnail(file, paths["thumbnails"] / name):
            thumbs[file] = f"{paths['thumbnails'].name}/{name}"
    paths["md"].write_text(_markdown(report, rows, thumbs))
    return paths
