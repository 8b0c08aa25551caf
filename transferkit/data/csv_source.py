"""Index a CSV of image paths and labels (and optionally splits)."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

from transferkit.data.folder import FolderIndex, extension_problem
from transferkit.errors import DataError

SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def index_csv(
    path: str | os.PathLike[str],
    path_column: str = "path",
    label_column: str = "label",
    split_column: str | None = "split",
) -> FolderIndex:
    """Reads ``path,label[,split]`` rows; paths are absolute or relative to the CSV's folder.

    The split column is used when present (values ``train``, ``val``/``validation``, ``test``);
    otherwise the split is made by :func:`transferkit.data.split.stratified_split`.

    Raises:
        DataError: no rows, missing columns, empty labels, unknown split values, missing files,
            or fewer than two classes.
    """
    csv_path = Path(path).expanduser()
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read CSV {str(csv_path)!r}: {err}") from None
    missing = [c for c in (path_column, label_column) if c not in columns]
    if missing:
        raise DataError(
            f"CSV {str(csv_path)!r} has no column {', '.join(map(repr, missing))} (columns: "
            f"{', '.join(columns) or 'none'}); name them with --path-column / --label-column"
        )
    if not rows:
        raise DataError(f"CSV {str(csv_path)!r} has no rows; add one row per image: {path_column},{label_column}")
    has_split = bool(split_column) and split_column in columns
    base = csv_path.resolve().parent
    records: list[tuple[str, str, str]] = []
    stats: dict[str, os.stat_result] = {}
    skipped: list[tuple[str, str]] = []
    missing_files: list[str] = []
    for line, row in enumerate(rows, start=2):
        file, label = (row.get(path_column) or "").strip(), (row.get(label_column) or "").strip()
        if not label:
            raise DataError(f"CSV {str(csv_path)!r} line {line}: empty label for {file or 'an empty path'!r}; every row needs a {label_column}")
        if not file:
            raise DataError(f"CSV {str(csv_path)!r} line {line}: empty {path_column}")
        split = ""
        if has_split:
            value = (row.get(split_column) or "").strip().lower()  # type: ignore[arg-type]
            if value not in SPLIT_VALUES:
                raise DataError(
                    f"CSV {str(csv_path)!r} line {line}: split {value!r} is not one of train, val, validation, test"
                )
            split = SPLIT_VALUES[value]
        full = os.path.abspath(base / os.path.expanduser(file))
        try:
            st = os.stat(full)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            missing_files.append(full)
            continue
        problem = extension_problem(full)
        if problem is None and st.st_size == 0:
            problem = "empty file (0 bytes)"
        if problem:
            skipped.append((full, problem))
            continue
        stats[full] = st
        records.append((full, label, split))
    if missing_files:
        raise DataError(
            f"CSV {str(csv_path)!r} names {len(missing_files)} missing file(s), e.g. {missing_files[0]!r}; "
            "paths are relative to the CSV's folder unless absolute"
        )
    class_names = tuple(sorted({label for _, label, _ in records}))
    if len(class_names) < 2:
        raise DataError(
            f"CSV {str(csv_path)!r} has {len(class_names)} class(es) with images "
            f"({', '.join(class_names) or 'none'}); a classifier needs at least 2"
        )
    if has_split and not any(s == "train" for *_, s in records):
        raise DataError(f"CSV {str(csv_path)!r} has no row with split 'train'")
    lookup = {name: i for i, name in enumerate(class_names)}
    records.sort(key=lambda r: (lookup[r[1]], r[0]))
    return FolderIndex(
        root=base,
        class_names=class_names,
        files=tuple(r[0] for r in records),
        labels=tuple(lookup[r[1]] for r in records),
        skipped=tuple(skipped),
        splits=tuple(r[2] for r in records) if has_split else (),
        sizes=tuple(stats[r[0]].st_size for r in records),
        stamps=tuple((stats[r[0]].st_mtime_ns, stats[r[0]].st_ctime_ns) for r in records),
    )
