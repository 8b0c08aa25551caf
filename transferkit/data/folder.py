"""Index a folder of class sub-folders into (path, label) records, checked before any training."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from transferkit.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


@dataclass(frozen=True)
class FolderIndex:
    """Image files of a class-folder dataset.

    Attributes:
        root: The dataset folder.
        class_names: Sub-folder names, sorted: the label of ``class_names[i]`` is ``i``.
        files: Absolute paths, grouped by class, sorted within each class.
        labels: Label of each file.
        skipped: Files left out (not an image by extension, or empty), as ``(path, reason)``.
    """

    root: Path
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    labels: tuple[int, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def check_data_dir(path: str | os.PathLike[str]) -> Path:
    """The dataset folder as a Path, or a DataError saying what is wrong with it."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(
            f"data folder {str(root)!r} does not exist; pass a folder with one sub-folder of images per class"
        )
    if not root.is_dir():
        raise DataError(
            f"data path {str(root)!r} is a file, not a folder; pass a folder with one sub-folder of images per class"
        )
    return root


def index_folder(path: str | os.PathLike[str]) -> FolderIndex:
    """Lists a class-folder dataset: ``root/<class>/<image>``.

    Uses ``os.scandir`` only (no image is opened), so it is fast on large folders.

    Raises:
        DataError: missing folder, a file, fewer than two classes, or a class with no images.
    """
    root = check_data_dir(path)
    class_dirs = sorted(
        (e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")),
        key=lambda e: e.name,
    )
    if len(class_dirs) < 2:
        found = ", ".join(e.name for e in class_dirs) or "none"
        raise DataError(
            f"{root} needs at least 2 class sub-folders of images, found {len(class_dirs)} ({found}); "
            "put each class's images in its own sub-folder"
        )
    files: list[str] = []
    labels: list[int] = []
    skipped: list[tuple[str, str]] = []
    for label, entry in enumerate(class_dirs):
        images: list[str] = []
        for f in os.scandir(entry.path):
            if not f.is_file() or f.name.startswith("."):
                continue
            if not is_image_name(f.name):
                skipped.append((f.path, "not an image file extension"))
            elif f.stat().st_size == 0:
                skipped.append((f.path, "empty file"))
            else:
                images.append(os.path.abspath(f.path))
        if not images:
            raise DataError(
                f"class folder {entry.path!r} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images to it or remove it"
            )
        images.sort()
        files.extend(images)
        labels.extend([label] * len(images))
    return FolderIndex(
        root=root,
        class_names=tuple(e.name for e in class_dirs),
        files=tuple(files),
        labels=tuple(labels),
        skipped=tuple(skipped),
    )
