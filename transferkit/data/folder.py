"""Index a folder dataset into (path, label) records, checked before any image is decoded.

Two layouts: ``root/<class>/<image>``, and ``root/{train,val|validation,test}/<class>/<image>``
(splits given by the user, detected and used as given).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from transferkit.data.probe import UNSUPPORTED_EXTENSIONS
from transferkit.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# Folder names of a pre-split dataset and the split each one is.
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class FolderIndex:
    """Image files of a dataset, whatever its source (folder or CSV).

    Attributes:
        root: The dataset folder (the CSV's folder for a CSV).
        class_names: Sorted class names: the label of ``class_names[i]`` is ``i``.
        files: Absolute paths, grouped by class, sorted within each class.
        labels: Label of each file.
        skipped: Files left out (not an image by extension, or empty), as ``(path, reason)``.
        splits: The split of each file when the source gives it (``train``/``val``/``test``),
            else empty.
        sizes: Bytes of each file (from the directory listing; used to find duplicates cheaply).
        stamps: ``(mtime_ns, ctime_ns)`` of each file, from the same ``stat``: with the path and
            size, what the disk cache knows a file's bytes by (see ``loader.file_identity``).
    """

    root: Path
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    labels: tuple[int, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    splits: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    stamps: tuple[tuple[int, int], ...] = ()


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def extension_problem(name: str) -> str | None:
    """Why a file name is not used as an image, or None when its extension is one we decode."""
    if is_image_name(name):
        return None
    fmt = UNSUPPORTED_EXTENSIONS.get(os.path.splitext(name)[1].lower())
    if fmt:
        return f"unsupported format ({fmt}); convert it to JPEG or PNG"
    return "not an image file extension"


def check_data_dir(path: str | os.PathLike[str]) -> Path:
    """The dataset folder as a Path, or a DataError saying what is wrong with it."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(
            f"data folder {str(root)!r} does not exist; pass a folder with one sub-folder of images per class"
        )
    if not root.is_dir():
        raise DataError(
            f"data path {str(root)!r} is a file, not a folder or a .csv; pass a folder with one "
            "sub-folder of images per class, a CSV of path,label rows, or tfds:NAME"
        )
    return root


def _subdirs(path: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    return sorted(
        (e for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")),
        key=lambda e: e.name,
    )


def _list_class(path: str) -> tuple[list[tuple[str, int, tuple[int, int]]], list[tuple[str, str]]]:
    """Images (sorted) in one class folder as ``(path, size, (mtime_ns, ctime_ns))``, and the
    files left out."""
    images: list[tuple[str, int, tuple[int, int]]] = []
    skipped: list[tuple[str, str]] = []
    for f in os.scandir(path):
        if f.name.startswith(".") or not f.is_file():
            continue
        problem = extension_problem(f.name)
        if problem is None:
            st = f.stat()
            if st.st_size:
                images.append((os.path.abspath(f.path), st.st_size, (st.st_mtime_ns, st.st_ctime_ns)))
                continue
            problem = "empty file (0 bytes)"
        skipped.append((os.path.abspath(f.path), problem))
    images.sort()
    return images, skipped


def split_layout(root: Path) -> dict[str, Path] | None:
    """``{split: folder}`` when ``root`` holds ``train/`` and ``val/``, ``validation/`` or ``test/``."""
    names = {e.name: Path(e.path) for e in _subdirs(root)}
    found = {SPLIT_FOLDERS[n]: p for n, p in names.items() if n in SPLIT_FOLDERS}
    if "train" in found and len(found) >= 2 and set(names) <= set(SPLIT_FOLDERS):
        if "val" in names and "validation" in names:
            raise DataError(f"{root} has both val/ and validation/; keep one of them")
        return found
    return None


def index_folder(path: str | os.PathLike[str]) -> FolderIndex:
    """Lists a folder dataset, either ``root/<class>/<image>`` or pre-split
    ``root/{train,val,test}/<class>/<image>``.

    Uses ``os.scandir`` only (no image is opened), so it is fast on large folders.

    Raises:
        DataError: missing folder, a file, fewer than two classes, or a class with no images.
    """
    root = check_data_dir(path)
    layout = split_layout(root)
    parts = layout or {"": root}
    class_names = sorted({e.name for folder in parts.values() for e in _subdirs(folder)})
    if layout and (extra := sorted({e.name for f in parts.values() for e in _subdirs(f)} - {e.name for e in _subdirs(layout["train"])})):
        raise DataError(
            f"classes {', '.join(extra)} have images in {root} but none in its train/ folder; "
            "add training images for them or remove them"
        )
    if len(class_names) < 2:
        where = layout["train"] if layout else root
        raise DataError(
            f"{where} needs at least 2 class sub-folders of images, found {len(class_names)} "
            f"({', '.join(class_names) or 'none'}); put each class's images in its own sub-folder"
        )
    files: list[str] = []
    labels: list[int] = []
    sizes: list[int] = []
    stamps: list[tuple[int, int]] = []
    splits: list[str] = []
    skipped: list[tuple[str, str]] = []
    for split, folder in parts.items():
        for label, name in enumerate(class_names):
            class_dir = folder / name
            if not class_dir.is_dir():
                continue
            images, left_out = _list_class(str(class_dir))
            skipped += left_out
            if not images and split in ("", "train"):
                raise DataError(
                    f"class folder {str(class_dir)!r} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                    "add images to it or remove it"
                )
            files += [p for p, _, _ in images]
            sizes += [n for _, n, _ in images]
            stamps += [t for _, _, t in images]
            labels += [label] * len(images)
            splits += [split] * len(images)
    return FolderIndex(
        root=root,
        class_names=tuple(class_names),
        files=tuple(files),
        labels=tuple(labels),
        skipped=tuple(skipped),
        splits=tuple(splits) if layout else (),
        sizes=tuple(sizes),
        stamps=tuple(stamps),
    )
