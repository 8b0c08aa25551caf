"""Loading a dataset: one interface for every source (train/validation/test pipelines plus class
names), :func:`load_data`.

Sources: a folder of class sub-folders (or of ``train/``, ``val/``, ``test/`` folders of them),
a CSV of paths and labels, or ``tfds:NAME`` from tensorflow-datasets.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.data.csv_source import index_csv
from transferkit.data.folder import FolderIndex, index_folder
from transferkit.data.probe import probe_files
from transferkit.data.split import (
    SPLITS,
    find_duplicates,
    stratified_split,
    train_subset,
    training_splits,
    write_manifest,
)
from transferkit.data.tfds_source import is_tfds
from transferkit.errors import ConfigError, DataError

SAMPLE_NAME = "sample"
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "assets" / "sample"
DIGITS_NAME = "digits"
"""scikit-learn's bundled copy of the UCI handwritten digits (1,797 8x8 grey images, 10 classes)."""
# The "auto" cache keeps decoded images in memory up to this share of the available memory.
MEMORY_CACHE_SHARE = 0.5


@dataclass
class DataBundle:
    """What training needs from a dataset.

    Attributes:
        train: Batches of (float32 0-255 images, int32 labels), shuffled and augmented; the
            images have the ``channels`` given to :func:`load_data` (3: RGB, 1: grey).
        val: Validation batches, never augmented.
        class_names: Class of each label index.
        files, labels, splits: The manifest: every file used, its label and its split.
        skipped: Files left out (not images, unsupported, unreadable, undecodable), as
            (path, reason); none of them is in ``files``, the counts or the pipelines.
        test: Test batches when the data has a test split, else None.
        class_weight: ``{label: weight}`` for ``model.fit`` with ``class_weight="auto"``, else None.
        soft_labels: The pipelines' labels are one-hot float32 rows (training batches mixed by
            mixup/cutmix), not integers: train with categorical cross-entropy.
        duplicates: Groups of byte-identical files (paths).
        notes: One-line notes for the user (duplicates across splits, validation carved out
            of a tfds train split).
        extra: Anything source-specific.
    """

    train: Any
    val: Any
    class_names: tuple[str, ...]
    files: tuple[str, ...] = ()
    labels: tuple[int, ...] = ()
    splits: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    test: Any = None
    class_weight: dict[int, float] | None = None
    soft_labels: bool = False
    duplicates: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def count(self, split: str) -> int:
        return sum(1 for s in self.splits if s == split)

    def write_manifest(self, path: str | os.PathLike[str]) -> None:
        """Writes ``split.csv``; and ``duplicates.txt`` beside it when byte-identical files exist."""
        write_manifest(path, self.files, self.labels, self.splits, self.class_names)
        if self.duplicates:
            where = dict(zip(self.files, self.splits))
            Path(path).with_name("duplicates.txt").write_text(
                "".join(
                    "\t".join(f"{f} ({where.get(f, 'skipped')})" for f in group) + "\n"
                    for group in self.duplicates
                )
            )


def resolve_source(source: str | os.PathLike[str]) -> Path:
    """The path a ``--data`` value names; ``sample`` is the small dataset shipped in the package,
    ``digits`` the handwritten digits bundled with scikit-learn (written once as class folders)."""
    if str(source) in (SAMPLE_NAME, DIGITS_NAME):
        if Path(str(source)).exists():
            raise DataError(
                f"'{source}' names both the built-in {source} dataset and ./{source} here; "
                f"write ./{source} for your folder"
            )
        return SAMPLE_DIR if str(source) == SAMPLE_NAME else digits_folder()
    return Path(source).expanduser()


def digits_folder() -> Path:
    """scikit-learn's handwritten digits as PNG class folders ``0``..``9`` in the transferkit cache
    (``$TRANSFERKIT_CACHE``, default ``~/.cache/transferkit``), written once, atomically."""
    import shutil

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(os.environ.get("TRANSFERKIT_CACHE") or Path.home() / ".cache" / "transferkit")
    folder = root / "digits"
    if folder.is_dir():
        return folder
    digits = load_digits()
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".digits-", dir=root))
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        (partial / str(label)).mkdir(exist_ok=True)
        pixels = np.round(image * (255.0 / 16.0)).astype(np.uint8)  # 0-16 counts to 0-255 grey
        Image.fromarray(pixels, mode="L").save(partial / str(label) / f"{i:04d}.png")
    try:
        partial.rename(folder)
    except OSError:  # another process wrote it first
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def is_csv(path: Path) -> bool:
    return path.suffix.lower() in (".csv", ".tsv") and not path.is_dir()


def index_source(
    source: str | os.PathLike[str],
    path_column: str = "path",
    label_column: str = "label",
    split_column: str | None = "split",
) -> FolderIndex:
    """Indexes a folder or CSV source without decoding any image (fast checks before training)."""
    if is_tfds(source):
        raise DataError(f"{source} is a tensorflow-datasets source; it has no files to index")
    path = resolve_source(source)
    if is_csv(path):
        if not path.exists():
            raise DataError(f"CSV {str(path)!r} does not exist")
        return index_csv(path, path_column, label_column, split_column)
    return index_folder(path)


def class_weights(labels: list[int], num_classes: int) -> dict[int, float]:
    """Balanced weights ``n / (classes * n_class)``: each class contributes equally to the loss."""
    counts = Counter(labels)
    n = len(labels)
    return {c: (n / (num_classes * counts[c]) if counts[c] else 0.0) for c in range(num_classes)}


def available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _cache_mode(cache: str, n_images: int, image_size: int, channels: int = 3) -> str | None:
    """``"memory"``, ``"disk"`` or None, for ``--cache`` mode ``cache``."""
    if cache not in ("auto", "memory", "disk", "none"):
        raise ConfigError(f"cache must be auto, memory, disk or none, got {cache!r}")
    if cache == "auto":
        fits = n_images * image_size * image_size * channels <= MEMORY_CACHE_SHARE * available_memory()
        return "memory" if fits else "disk"
    return None if cache == "none" else cache


def _disk_cache(key: str, cache_dir: str | None) -> str:
    """The file prefix of the disk cache ``key`` (an interrupted one is cleared)."""
    folder = Path(cache_dir or Path(tempfile.gettempdir()) / "transferkit-cache")
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / key
    if not Path(f"{prefix}.index").exists():  # no complete cache: clear an interrupted one
        for stale in folder.glob(f"{key}*"):
            stale.unlink()
    return str(prefix)


def _key(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(repr(part).encode())
    return h.hexdigest()


def _files_key(
    split: str, files: list[str], sizes: list[int], stamps: list[tuple[int, int]], labels: list[int],
    probes: list[Any], image_size: int, channels: int,
) -> str:
    """Key of the disk cache of one split: everything the cached images and their use depend on.

    A file's bytes are known by (path, size, mtime_ns, ctime_ns), from the stat the index made
    anyway: hashing the contents would read every byte of the dataset on every run. That is
    enough because every write sets a file's mtime and ctime to the current time, and while
    tools can restore an mtime (cp -p, rsync -a, tar), only the kernel sets ctime, so a replaced
    file with the same size and mtime still gets a new ctime. (A ctime change alone, e.g. chmod,
    costs one needless decoding pass, never a wrong image.) Labels are not in the cache (they are
    attached after it by index) but are keyed too, as are the split, the probe's decoder choices,
    the output size and channels, and the cache format.
    """
    from transferkit.data.pipeline import CACHE_VERSION

    rows = [
        (f, n, t, y, p.format_code, p.orientation, p.width, p.height)
        for f, n, t, y, p in zip(files, sizes, stamps, labels, probes)
    ]
    return f"{split}-{_key(CACHE_VERSION, split, image_size, channels, rows)}"


def load_data(
    source: str | os.PathLike[str],
    image_size: int,
    batch_size: int = 32,
    val_split: float = 0.2,
    seed: int = 0,
    augment: bool = True,
    *,
    channels: int = 3,
    augment_spec: str | None = None,
    class_weight: str | None = None,
    test_split: float = 0.0,
    train_fraction: float = 1.0,
    data_dir: str | None = None,
    tfds_splits: str | None = None,
    path_column: str = "path",
    label_column: str = "label",
    split_column: str = "split",
    cache: str = "auto",
    cache_dir: str | None = None,
) -> DataBundle:
    """Loads a dataset as train/validation(/test) tf.data pipelines.

    Every file is first checked from its header (format, emptiness, EXIF orientation); files
    that cannot be used are skipped and listed. Then every image is decoded once, in parallel,
    through :func:`transferkit.data.pipeline.decode_files` (into the cache, or with
    ``cache="none"`` only to check it), and files that fail to decode are skipped too, with
    their decoder's error: the files, counts and ``split.csv`` list exactly the images the
    pipelines yield, and no bad file can stop an epoch.

    Args:
        source: A folder of class sub-folders (or of ``train/``, ``val/``, ``test/``), a CSV of
            ``path,label[,split]`` rows, ``"tfds:NAME"``, or ``"sample"`` for the built-in sample.
        image_size: Side of the square images the model takes.
        batch_size: Batch size.
        val_split: Fraction of each class held out for validation (stratified, seeded); not used
            when the source gives its own validation split.
        seed: Seed of the split, the shuffling and the augmentation.
        augment: Augment training batches (with ``augment_spec``).
        channels: 3 for RGB images, 1 for grey (converted in the decoding, before the cache).
        augment_spec: Augmentations, e.g. ``"flip,rotation=0.1,crop,contrast"``; default
            ``flip,rotation,zoom``.
        class_weight: ``"auto"`` for balanced class weights (``DataBundle.class_weight``).
        test_split: Fraction of each class held out for testing.
        train_fraction: Fraction of each class's training images used (after the split, so
            validation is the same; stratified, seeded).
        data_dir: tensorflow-datasets data folder.
        tfds_splits: tfds split mapping, e.g. ``"train=train,val=validation"``.
        path_column, label_column, split_column: CSV column names.
        cache: ``auto``, ``memory``, ``disk`` or ``none`` (see :class:`DataOptions`).
        cache_dir: Folder of the disk cache.

    Raises:
        DataError: anything about the data a user must fix, as one line.
    """
    from transferkit.data import pipeline

    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if class_weight not in (None, "none", "auto"):
        raise ConfigError(f"class_weight must be 'auto' or None, got {class_weight!r}")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    spec = augment_spec or pipeline.DEFAULT_AUGMENT
    augmentation = pipeline.build_augmentation(spec, seed, image_size) if augment else None
    mixing = pipeline.build_mixing(spec, seed) if augment else []
    if is_tfds(source):
        return _load_tfds(
            str(source), image_size, channels, batch_size, val_split, seed, augmentation, class_weight,
            data_dir, tfds_splits, cache, cache_dir, train_fraction, mixing,
        )
    index = index_source(source, path_column, label_column, split_column)
    skipped = list(index.skipped)
    all_probes = probe_files(index.files, index.sizes)
    bad = [p for p in all_probes if p.problem]
    skipped += [(p.path, p.problem) for p in bad]  # type: ignore[misc]
    keep = [i for i, p in enumerate(all_probes) if not p.problem]
    _check_usable(index, keep, bad)
    _check_mixing(mixing, len(index.class_names))
    files = [index.files[i] for i in keep]
    labels = [index.labels[i] for i in keep]
    sizes = [index.sizes[i] for i in keep]
    stamps = [index.stamps[i] for i in keep]
    probes = [all_probes[i] for i in keep]
    given = [index.splits[i] for i in keep] if index.splits else []
    splits = training_splits(labels, given, val_split, seed, index.class_names, test_split)
    if train_fraction != 1.0:
        kept = train_subset(labels, splits, train_fraction, seed)
        files, labels, sizes, stamps, probes, splits = (
            [column[i] for i in kept] for column in (files, labels, sizes, stamps, probes, splits)
        )

    def decode(rows: list[int], target: str | None) -> Any:
        return pipeline.decode_files(
            [files[i] for i in rows], image_size, channels, target, probes=[probes[i] for i in rows]
        )

    rows_of = {split: [i for i, s in enumerate(splits) if s == split] for split in SPLITS}
    rows_of = {split: rows for split, rows in rows_of.items() if rows}
    decoded: dict[str, tuple[Any, list[int]]] = {}  # split -> (dataset, the rows its indices are of)
    mode = _cache_mode(cache, len(files), image_size, channels)
    if mode == "memory":
        # One decoding pass and one set of decoders for all splits: each split is its run of
        # the one cache (rows in split order, which decode_files keeps).
        order = [i for rows in rows_of.values() for i in rows]
        everything = decode(order, "memory")
        done = {order[j] for j in pipeline.fill_cache(everything, len(order))}
        start = 0
        for split, rows in rows_of.items():
            n = sum(1 for i in rows if i in done)
            decoded[split] = (everything.skip(start).take(n), order)
            start += n
    elif mode == "disk":
        done = set()
        for split, rows in rows_of.items():
            # One cache per split, so an epoch reads only its own split from disk.
            key = _files_key(
                split, [files[i] for i in rows], [sizes[i] for i in rows], [stamps[i] for i in rows],
                [labels[i] for i in rows], [probes[i] for i in rows], image_size, channels,
            )
            ds = decode(rows, _disk_cache(key, cache_dir))
            done |= {rows[j] for j in pipeline.fill_cache(ds, len(rows))}
            decoded[split] = (ds, rows)
    else:
        # No cache to fill, so one pass through the same decoders, keeping nothing, finds the
        # files that cannot be decoded (the cost of one more epoch's decoding); the pipelines
        # then read only the others.
        order = [i for rows in rows_of.values() for i in rows]
        done = {order[j] for j in pipeline.fill_cache(decode(order, None), len(order))}
        for split, rows in rows_of.items():
            good = [i for i in rows if i in done]
            decoded[split] = (decode(good, None), good)
    failed = sorted(set(range(len(files))) - done)
    skipped += [(files[i], pipeline.decode_problem(files[i], image_size, probes[i], channels)) for i in failed]
    used = [i for i in range(len(files)) if i in done]
    if failed:
        for split in ("train", "val"):
            if not any(splits[i] == split for i in used):
                raise DataError(
                    f"no image of the {split} split of {source} can be decoded "
                    f"(e.g. {files[failed[0]]!r}); run `transferkit doctor --data {source}`"
                )
    pipes: dict[str, Any] = {}
    for split, (ds, rows) in decoded.items():
        n = sum(1 for i in used if splits[i] == split)
        buffer = n if mode != "disk" else min(n, 4096)
        pipes[split] = pipeline.batched(
            ds, [labels[i] for i in rows], batch_size, training=split == "train", seed=seed,
            augmentation=augmentation, shuffle_buffer=buffer, count=n,
            num_classes=len(index.class_names) if mixing else None, mixing=mixing,
        )
    files = [files[i] for i in used]
    labels_used = [labels[i] for i in used]
    splits = [splits[i] for i in used]
    notes: list[str] = []
    groups = find_duplicates(files, [sizes[i] for i in used])
    across = [g for g in groups if len({splits[i] for i in g}) > 1]
    if across:
        notes.append(
            f"{len(across)} group(s) of byte-identical files fall in different splits (e.g. "
            f"{files[across[0][0]]!r} and {files[across[0][1]]!r}): validation scores are optimistic; "
            "see duplicates.txt"
        )
    weights = class_weights([y for y, s in zip(labels_used, splits) if s == "train"], len(index.class_names)) if class_weight == "auto" else None
    return DataBundle(
        train=pipes["train"],
        val=pipes["val"],
        test=pipes.get("test"),
        class_names=index.class_names,
        files=tuple(files),
        labels=tuple(labels_used),
        splits=tuple(splits),
        skipped=tuple(skipped),
        class_weight=weights,
        soft_labels=bool(mixing),
        duplicates=tuple(tuple(files[i] for i in g) for g in groups),
        notes=tuple(notes),
    )


def _check_usable(index: FolderIndex, keep: list[int], bad: list[Any]) -> None:
    """Refuses a dataset whose classes have no usable file left."""
    if not keep:
        example = f" (e.g. {bad[0].path}: {bad[0].problem})" if bad else ""
        raise DataError(
            f"none of the {len(index.files)} files in {index.root} can be used as an image{example}; "
            "run `transferkit doctor` on it"
        )
    present = Counter(index.labels[i] for i in keep)
    empty = [index.class_names[c] for c in range(len(index.class_names)) if not present[c]]
    if empty:
        raise DataError(
            f"class {empty[0]!r} has no usable image (all unreadable or unsupported); "
            "fix or remove its files, or remove the class"
        )


def _check_mixing(mixing: list[Any], num_classes: int) -> None:
    if mixing and num_classes < 2:
        raise ConfigError(
            f"{mixing[0].__class__.__name__} mixes images of different classes, but the data has only "
            f"{num_classes} class; drop mixup/cutmix from --augment or add classes"
        )


def _load_tfds(
    source: str, image_size: int, channels: int, batch_size: int, val_split: float, seed: int, augmentation: Any,
    class_weight: str | None, data_dir: str | None, tfds_splits: str | None, cache: str, cache_dir: str | None,
    train_fraction: float = 1.0, mixing: list[Any] | None = None,
) -> DataBundle:
    import numpy as np
    import tensorflow as tf

    from transferkit.data import pipeline
    from transferkit.data.tfds_source import open_tfds

    src = open_tfds(source, data_dir, tfds_splits)
    _check_mixing(mixing or [], len(src.class_names))
    # Every example's label, read without decoding any image: carving needs them, and so do the
    # manifest and class weights whatever the cache.
    labels_of = {split: src.labels(split) for split in src.splits}
    # Our split -> (the tfds split read, the indices of its examples that belong to it).
    parts = {split: (split, list(range(len(labels)))) for split, labels in labels_of.items()}
    notes: list[str] = []
    if "val" not in src.splits:
        carved = stratified_split(labels_of["train"], val_split, seed, src.class_names)
        parts["train"] = ("train", [i for i, s in enumerate(carved) if s == "train"])
        parts["val"] = ("train", [i for i, s in enumerate(carved) if s == "val"])
        notes.append(
            f"{source} has no validation split: validation is {len(parts['val'][1])} examples carved out of "
            f"its {src.splits['train']!r} split ({val_split:.0%} of each class, stratified, seed {seed}); "
            f"training uses the other {len(parts['train'][1])}"
        )
    if train_fraction != 1.0:
        read, rows = parts["train"]
        train_labels = [labels_of[read][i] for i in rows]
        parts["train"] = (read, [rows[j] for j in train_subset(train_labels, ["train"] * len(rows), train_fraction, seed)])
    pipes: dict[str, Any] = {}
    files: list[str] = []
    labels: list[int] = []
    splits: list[str] = []
    for split in SPLITS:
        if split not in parts:
            continue
        read, rows = parts[split]
        split_labels = [labels_of[read][i] for i in rows]
        key = _key(
            pipeline.CACHE_VERSION, source, src.builder.data_dir, str(src.builder.version), src.splits[read],
            rows, split_labels, image_size, channels,
        )
        mode = _cache_mode(cache, len(rows), image_size, channels)
        target = _disk_cache(f"tfds-{split}-{key}", cache_dir) if mode == "disk" else mode
        # Each example's position in ``rows`` (-1: another split's), chosen before decoding.
        position = np.full(len(labels_of[read]), -1, np.int32)
        position[rows] = np.arange(len(rows), dtype=np.int32)
        table = tf.constant(position)
        examples = src.examples(read).enumerate().map(lambda i, xy: (tf.gather(table, i), xy[0]))
        if len(rows) < len(position):
            examples = examples.filter(lambda j, x: j >= 0)
        decoded = pipeline.decoded_tensor_dataset(examples, image_size, src.decode_image, channels, target)
        # tfds wrote these images itself when preparing the dataset, so without a cache to fill
        # no checking pass is made.
        done = pipeline.fill_cache(decoded, len(rows)) if target is not None else list(range(len(rows)))
        files += [f"tfds:{src.name}/{src.splits[read]}/{rows[j]}" for j in done]
        labels += [split_labels[j] for j in done]
        splits += [split] * len(done)
        if split in ("train", "val") and not done:
            raise DataError(f"the {split} split of {source} ({src.splits[read]}) has no examples")
        buffer = len(done) if target == "memory" else min(max(len(done), 1), 4096)
        pipes[split] = pipeline.batched(
            decoded, split_labels, batch_size, training=split == "train", seed=seed, augmentation=augmentation,
            shuffle_buffer=buffer, count=len(done) if target is not None else None,
            num_classes=len(src.class_names) if mixing else None, mixing=mixing or (),
        )
    weights = (
        class_weights([y for y, s in zip(labels, splits) if s == "train"], len(src.class_names))
        if class_weight == "auto"
        else None
    )
    return DataBundle(
        train=pipes["train"],
        val=pipes["val"],
        test=pipes.get("test"),
        class_names=src.class_names,
        soft_labels=bool(mixing),
        files=tuple(files),
        labels=tuple(labels),
        splits=tuple(splits),
        class_weight=weights,
        notes=tuple(notes),
        extra={"tfds_splits": dict(src.splits), "val_carved_from": src.splits["train"] if notes else None},
    )
