"""Sources (folder, pre-split folder, CSV, tensorflow-datasets), splits and the manifest."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from data_images import encode, make_class_folder, pattern, write
from transferkit.data import load_data, read_manifest
from transferkit.data.split import stratified_split
from transferkit.errors import DataError

SIZE = 16


def batches_count(ds) -> int:  # noqa: ANN001
    return sum(int(y.shape[0]) for _, y in ds)


def test_folder_split_is_stratified_seeded_and_written(small_folder: Path, tmp_path: Path) -> None:
    a = load_data(small_folder, SIZE, 4, 0.2, seed=1, augment=False, test_split=0.2)
    b = load_data(small_folder, SIZE, 4, 0.2, seed=1, augment=False, test_split=0.2)
    c = load_data(small_folder, SIZE, 4, 0.2, seed=2, augment=False, test_split=0.2)
    assert a.splits == b.splits and a.splits != c.splits
    for label in (0, 1):  # 10 per class: 2 val, 2 test, 6 train
        own = [s for s, y in zip(a.splits, a.labels) if y == label]
        assert (own.count("train"), own.count("val"), own.count("test")) == (6, 2, 2)
    assert batches_count(a.train) == 12 and batches_count(a.val) == 4 and batches_count(a.test) == 4
    a.write_manifest(tmp_path / "split.csv")
    manifest = read_manifest(tmp_path / "split.csv")
    assert manifest.class_names == ("cats", "dogs") and manifest.held_out_split() == "test"
    files, labels = manifest.subset("test")
    assert len(files) == 4 and not set(files) & set(manifest.subset("train")[0])


def test_stratified_split_keeps_every_class_in_every_split() -> None:
    labels = [0] * 50 + [1] * 3
    splits = stratified_split(labels, 0.2, 0, test_fraction=0.1)
    assert {s for s, y in zip(splits, labels) if y == 1} == {"train", "val", "test"}
    assert sum(1 for s, y in zip(splits, labels) if y == 0 and s == "val") == 10


def test_presplit_folder_is_used_as_given(tmp_path: Path) -> None:
    root = tmp_path / "presplit"
    make_class_folder(root / "train", {"a": 4, "b": 4})
    make_class_folder(root / "validation", {"a": 2, "b": 2}, size=20)
    make_class_folder(root / "test", {"a": 1, "b": 1}, size=28)
    data = load_data(root, SIZE, 4, 0.2, 0, augment=False)
    assert data.class_names == ("a", "b")
    assert (data.count("train"), data.count("val"), data.count("test")) == (8, 4, 2)
    assert all(("/validation/" in f) == (s == "val") for f, s in zip(data.files, data.splits))
    assert batches_count(data.test) == 2


def test_csv_with_relative_absolute_paths_custom_columns_and_splits(small_folder: Path, tmp_path: Path) -> None:
    rows = []
    for i, f in enumerate(sorted(small_folder.rglob("*.jpg"))):
        path = str(f) if i % 2 else str(f.relative_to(small_folder))
        rows.append({"file": path, "kind": f.parent.name, "part": ["train", "train", "train", "val", "test"][i % 5]})
    csv_path = small_folder / "labels.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["file", "kind", "part"])
        w.writeheader()
        w.writerows(rows)
    data = load_data(csv_path, SIZE, 4, 0.2, 0, augment=False, path_column="file", label_column="kind", split_column="part")
    assert data.class_names == ("cats", "dogs")
    assert (data.count("train"), data.count("val"), data.count("test")) == (12, 4, 4)
    x, y = next(iter(data.val))
    assert x.shape[1:] == (SIZE, SIZE, 3) and x.dtype.name == "float32"


def test_duplicates_across_splits_are_reported(small_folder: Path, tmp_path: Path) -> None:
    for i in range(4):  # the same bytes under several names: some land in different splits
        shutil.copy(small_folder / "cats" / "000.jpg", small_folder / "cats" / f"copy{i}.jpg")
    data = load_data(small_folder, SIZE, 4, 0.3, 0, augment=False)
    assert len(data.duplicates) == 1 and len(data.duplicates[0]) == 5
    assert any("byte-identical" in note for note in data.notes)
    data.write_manifest(tmp_path / "split.csv")
    assert "copy0.jpg" in (tmp_path / "duplicates.txt").read_text()


def test_tfds_through_mock_data(tmp_path: Path) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        data = load_data(
            "tfds:oxford_flowers102", SIZE, 4, 0.2, 0, augment=True, data_dir=str(tmp_path), class_weight="auto",
            tfds_splits="train=train,val=validation",
        )
        assert len(data.class_names) == 102
        x, y = next(iter(data.train))
        assert x.shape[1:] == (SIZE, SIZE, 3) and y.dtype.name == "int32"
        assert data.count("train") == 6 and data.count("val") == 6 and data.test is None
        assert data.class_weight is not None
        mapped = load_data("tfds:oxford_flowers102", SIZE, 4, 0.2, 0, augment=False, data_dir=str(tmp_path), tfds_splits="train=train[:50%],val=test")
        assert mapped.extra["tfds_splits"] == {"train": "train[:50%]", "val": "test"}


def _tfds_metadata(root: Path, name: str, splits: dict[str, int]) -> Path:
    """The metadata files tfds reads for a prepared dataset, declaring only ``splits``; with
    ``mock_data(policy=USE_FILES, data_dir=root)`` the mocked dataset has exactly those splits."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import naming, splits as splits_lib

    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE):
        builder = tfds.builder(name)
        folder = root / name / str(builder.version)
        folder.mkdir(parents=True)
        template = naming.ShardedFileTemplate(data_dir=folder, dataset_name=name, filetype_suffix="tfrecord")
        builder.info.set_splits(splits_lib.SplitDict([
            splits_lib.SplitInfo(name=s, shard_lengths=[n], num_bytes=0, filename_template=template.replace(split=s))
            for s, n in splits.items()
        ]))
        builder.info.write_to_directory(folder)
    return root


def test_tfds_without_validation_split_carves_it_from_train_stratified(tmp_path: Path) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    meta = _tfds_metadata(tmp_path / "meta", "horses_or_humans", {"train": 40, "test": 40})
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(meta)):
        builder = tfds.builder("horses_or_humans")
        assert set(builder.info.splits.keys()) == {"train", "test"}
        truth = [int(ex["label"]) for ex in builder.as_dataset(split="train", shuffle_files=False)]
        data = load_data("tfds:horses_or_humans", SIZE, 8, 0.25, seed=3, augment=False, cache="memory")
        val_batches = [(x.numpy(), y.numpy()) for x, y in data.val]
        train_labels = sorted(int(v) for _, y in data.train for v in y.numpy())
    val = {int(f.rsplit("/", 1)[1]): y for f, y, s in zip(data.files, data.labels, data.splits) if s == "val"}
    train = {int(f.rsplit("/", 1)[1]): y for f, y, s in zip(data.files, data.labels, data.splits) if s == "train"}
    assert all(f.startswith("tfds:horses_or_humans/train/") for f, s in zip(data.files, data.splits) if s != "test")
    assert not set(val) & set(train) and set(val) | set(train) == set(range(40))
    assert all(truth[i] == y for i, y in {**train, **val}.items())
    for c in (0, 1):  # each class gives a quarter of its examples, to the nearest one
        n_class, n_val = truth.count(c), sum(1 for i in val if truth[i] == c)
        assert n_val >= 1 and abs(n_val - 0.25 * n_class) <= 0.5
    # The pipelines yield those examples: validation in example order, training in any order.
    assert [int(v) for _, y in val_batches for v in y] == [truth[i] for i in sorted(val)]
    assert train_labels == sorted(truth[i] for i in train)
    assert sum(len(y) for _, y in val_batches) == len(val) and data.count("test") > 0
    assert any("no validation split" in note and "carved" in note and "stratified" in note for note in data.notes)


# ---- bad input: one-line DataError (the CLI turns it into exit code 2 with nothing written) ----


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _bad_sources(tmp: Path) -> dict[str, tuple[str, str]]:
    """name -> (--data value, expected words in the error)."""
    img = encode(pattern(20, 20), "JPEG")
    write(tmp / "imgs" / "a.jpg", img)
    write(tmp / "imgs" / "b.jpg", encode(pattern(20, 20, 1), "JPEG"))
    one = make_class_folder(tmp / "one_class", {"only": 5})
    few = make_class_folder(tmp / "few", {"big": 6, "tiny": 1})
    unreadable = tmp / "unreadable"
    for cls in ("a", "b"):
        for i in range(3):
            write(unreadable / cls / f"{i}.jpg", b"this is not a JPEG" * (i + 1))
    write(tmp / "notes.txt", b"hello")
    return {
        "csv_missing_column": (str(_csv(tmp / "c1.csv", "file,label\nimgs/a.jpg,x\n")), "no column 'path'"),
        "csv_missing_file": (str(_csv(tmp / "c2.csv", "path,label\nimgs/a.jpg,x\nimgs/nope.jpg,y\n")), "missing file"),
        "csv_empty_label": (str(_csv(tmp / "c3.csv", "path,label\nimgs/a.jpg,x\nimgs/b.jpg,\n")), "empty label"),
        "csv_no_rows": (str(_csv(tmp / "c4.csv", "path,label\n")), "no rows"),
        "tfds_unknown": ("tfds:no_such_dataset_xyz", "no tensorflow-datasets dataset"),
        "file_not_csv": (str(tmp / "notes.txt"), "is a file"),
        "one_class": (str(one), "at least 2 class"),
        "too_few_in_class": (str(few), "'tiny' has 1 image"),
        "all_unreadable": (str(unreadable), "none of the 6 files"),
    }


BAD = [
    "csv_missing_column", "csv_missing_file", "csv_empty_label", "csv_no_rows", "tfds_unknown",
    "file_not_csv", "one_class", "too_few_in_class", "all_unreadable",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_error_exit_2_nothing_written(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transferkit.cli import main

    source, words = _bad_sources(tmp_path / "src")[case]
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_data(source, SIZE, 4, 0.2, 0, augment=False)
    out = tmp_path / "run"
    capsys.readouterr()
    code = main(["train", "--data", source, "--out", str(out), "--image-size", "32", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("transferkit train: error:"), err
    assert not out.exists() and not list(tmp_path.glob(".run*"))


def test_tfds_not_downloaded_offline_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataError, match="not downloaded"):
        load_data("tfds:oxford_flowers102", SIZE, 4, data_dir=str(tmp_path / "empty"))
