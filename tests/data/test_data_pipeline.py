"""The pipeline: bad files never stop training, augmentation only on training data, caches,
class weights, and the finetune integration."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from data_images import encode, exif_bytes, make_class_folder, pattern, write
from transferkit.data import load_data, read_manifest
from transferkit.data.pipeline import build_augmentation, decode_files, parse_augment
from transferkit.errors import ConfigError

SIZE = 16


def truncated_jpeg(seed: int = 9) -> bytes:
    """Header intact (passes the fast check), scan data cut: fails only when decoded."""
    data = encode(pattern(64, 64, seed), "JPEG", quality=95)
    return data[: len(data) // 2]


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_undecodable_file_is_reported_and_left_out_everywhere(small_folder: Path, tmp_path: Path, cache: str) -> None:
    bad = write(small_folder / "cats" / "zz_truncated.jpg", truncated_jpeg())
    write(small_folder / "dogs" / "notes.txt", b"not an image")
    data = load_data(small_folder, SIZE, 4, 0.2, 0, augment=False, cache=cache, cache_dir=str(tmp_path / "cache"))
    reasons = dict(data.skipped)
    assert reasons[str(bad)].startswith("cannot be decoded (") and "JPEG" in reasons[str(bad)]
    assert any(p.endswith("notes.txt") for p in reasons)
    assert str(bad) not in data.files and len(data.files) == len(data.labels) == len(data.splits) == 20
    assert data.count("train") + data.count("val") == 20  # the 20 decodable images
    data.write_manifest(tmp_path / "split.csv")
    manifest = read_manifest(tmp_path / "split.csv")
    assert len(manifest.files) == 20 and str(bad) not in manifest.files
    for _ in range(2):  # every epoch completes and yields exactly the counted images
        assert sum(int(y.shape[0]) for _, y in data.train) == data.count("train")
        assert sum(int(y.shape[0]) for _, y in data.val) == data.count("val")


def _write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    return path


def test_disk_cache_trains_on_a_corrected_label(tmp_path: Path) -> None:
    """Relabelling a4 from a to b keeps every split's file list and order (files sort by class,
    then path), the case where a cache keyed by files alone served the old label."""
    root = tmp_path / "data"
    rows = []
    for i in range(5):
        for cls in "ab":
            write(root / f"{cls}{i}.jpg", encode(pattern(20, 20, 10 * i + (cls == "b")), "JPEG"))
            rows.append((f"{cls}{i}.jpg", cls, "val" if i == 1 else "train"))
    source = _write_csv(root / "labels.csv", rows)
    cache = str(tmp_path / "cache")

    def images_and_labels(pipe) -> list[tuple[bytes, int]]:  # noqa: ANN001
        return [(x.astype(np.uint8).tobytes(), int(y)) for xs, ys in pipe for x, y in zip(xs.numpy(), ys.numpy())]

    def expected(data, labels: dict[str, str]) -> dict[bytes, int]:  # noqa: ANN001
        """Each file's image, decoded on its own, with its label in the CSV."""
        import tensorflow as tf

        from transferkit.data.pipeline import load_image

        return {
            load_image(tf.constant(str(root / name)), SIZE).numpy().tobytes(): data.class_names.index(label)
            for name, label in labels.items()
        }

    first = load_data(source, SIZE, 4, augment=False, cache="disk", cache_dir=cache)
    assert sorted(images_and_labels(first.train) + images_and_labels(first.val)) == sorted(
        expected(first, {n: c for n, c, _ in rows}).items()
    )
    rows = [(n, "b" if n == "a4.jpg" else c, s) for n, c, s in rows]
    _write_csv(source, rows)
    second = load_data(source, SIZE, 4, augment=False, cache="disk", cache_dir=cache)
    truth = expected(second, {n: c for n, c, _ in rows})
    assert dict(zip(second.files, second.labels))[str(root / "a4.jpg")] == 1
    for pipe in (second.train, second.val):
        for image, label in images_and_labels(pipe):
            assert label == truth[image]
    assert sorted(images_and_labels(second.train) + images_and_labels(second.val)) == sorted(truth.items())


def test_uncached_stream_drops_bad_files_mid_epoch(tmp_path: Path) -> None:
    files = [str(write(tmp_path / f"{i}.jpg", encode(pattern(20, 20, i), "JPEG"))) for i in range(6)]
    files[3] = str(write(tmp_path / "bad.jpg", truncated_jpeg()))
    ds = decode_files(files, SIZE, batch_size=2)
    assert sorted(i for index, _ in ds for i in index.numpy().tolist()) == [0, 1, 2, 4, 5]


def test_augmentation_only_on_training_batches(small_folder: Path) -> None:
    data = load_data(small_folder, SIZE, 32, 0.2, 0, augment=True, augment_spec="flip,rotation=0.2,zoom=0.2,crop=0.8,contrast=0.3")
    plain = load_data(small_folder, SIZE, 32, 0.2, 0, augment=False)
    val1 = np.concatenate([x.numpy() for x, _ in data.val])
    val2 = np.concatenate([x.numpy() for x, _ in plain.val])
    np.testing.assert_array_equal(val1, val2)
    aug = sorted(np.concatenate([x.numpy() for x, _ in data.train]).reshape(16, -1).sum(1))
    ref = sorted(np.concatenate([x.numpy() for x, _ in plain.train]).reshape(16, -1).sum(1))
    assert not np.allclose(aug, ref)


def test_augmentation_spec() -> None:
    assert parse_augment("flip,rotation=0.1,crop") == [("flip", "horizontal"), ("rotation", 0.1), ("crop", 0.875)]
    assert parse_augment("none") == [] and build_augmentation("none") is None
    layers = build_augmentation("flip,zoom,contrast", 0, 32).layers  # flip and zoom fuse: one resample
    assert [type(layer).__name__ for layer in layers] == ["RandomAffine", "RandomContrast"]
    with pytest.raises(ConfigError, match="unknown augmentation 'blur'"):
        parse_augment("flip,blur")
    with pytest.raises(ConfigError, match="takes a number"):
        parse_augment("rotation=lots")


def test_class_weight_auto_balances_classes(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "imb", {"common": 15, "rare": 5})
    data = load_data(root, SIZE, 4, 0.2, 0, augment=False, class_weight="auto")
    train = [y for y, s in zip(data.labels, data.splits) if s == "train"]
    assert data.class_weight is not None
    totals = {c: data.class_weight[c] * train.count(c) for c in (0, 1)}
    assert totals[0] == pytest.approx(totals[1]) and data.class_weight[1] > 2 * data.class_weight[0]
    assert load_data(root, SIZE, 4, 0.2, 0, augment=False).class_weight is None


def test_disk_cache_is_written_and_reused(small_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_data(small_folder, SIZE, 4, 0.2, 0, augment=False, cache="disk", cache_dir=str(cache))
    assert list(cache.glob("train-*.index"))
    x1 = np.concatenate([x.numpy() for x, _ in first.val])
    second = load_data(small_folder, SIZE, 4, 0.2, 0, augment=False, cache="disk", cache_dir=str(cache))
    np.testing.assert_array_equal(x1, np.concatenate([x.numpy() for x, _ in second.val]))
    memory = load_data(small_folder, SIZE, 4, 0.2, 0, augment=False, cache="memory")
    np.testing.assert_array_equal(x1, np.concatenate([x.numpy() for x, _ in memory.val]))


def test_groups_of_decoders_keep_every_index(tmp_path: Path) -> None:
    files = [
        str(write(tmp_path / "a.jpg", encode(pattern(40, 30), "JPEG"))),
        str(write(tmp_path / "b.png", encode(pattern(30, 40), "PNG"))),
        str(write(tmp_path / "c.jpg", encode(pattern(300, 200), "JPEG"))),
    ]
    ds = decode_files(files, SIZE)  # three decoders: JPEG at full size, PNG, JPEG at 1/8
    assert [int(i) for i, _ in ds] == [0, 1, 2]


def test_a_file_decodes_the_same_whatever_files_come_with_it(tmp_path: Path) -> None:
    """Each call's set of decoder groups is one function choosing a branch per file: a file must
    get its own group's decoder alone, among other groups, in any order."""
    files = [
        str(write(tmp_path / "small.jpg", encode(pattern(40, 30), "JPEG"))),
        str(write(tmp_path / "b.png", encode(pattern(30, 40), "PNG"))),
        str(write(tmp_path / "big.jpg", encode(pattern(300, 200), "JPEG"))),  # decoded at 1/8
        str(write(tmp_path / "mid.jpg", encode(pattern(90, 70), "JPEG"))),  # at 1/2
        str(write(tmp_path / "d.gif", encode(pattern(50, 50), "GIF"))),
    ]
    alone = [next(iter(decode_files([f], SIZE)))[1].numpy() for f in files]
    for subset in (files, files[::-1], files[2:], [files[4], files[0]]):
        got = {subset[int(i)]: x.numpy() for i, x in decode_files(subset, SIZE)}
        assert list(got) == subset
        for f in subset:
            np.testing.assert_array_equal(got[f], alone[files.index(f)], err_msg=f)


def test_decode_files_keeps_file_order_and_each_files_orientation(tmp_path: Path) -> None:
    """Groups decode interleaved, in file order; a group of mixed orientations flips per image."""
    import tensorflow as tf

    from transferkit.data.pipeline import load_image

    specs = [("JPEG", 1), ("PNG", 1), ("JPEG", 6), ("JPEG", 3), ("PNG", 1), ("JPEG", 1)]
    files = [
        str(write(tmp_path / f"{i}.{fmt.lower()}", encode(pattern(40, 28, i), fmt, **({"exif": exif_bytes(o)} if o != 1 else {}))))
        for i, (fmt, o) in enumerate(specs)
    ]
    formats = [1 if fmt == "JPEG" else 2 for fmt, _ in specs]
    orientations = [o for _, o in specs]
    got = list(decode_files(files, SIZE))
    assert [int(i) for i, _ in got] == list(range(6))
    for (i, image), f, fmt, o in zip(got, files, formats, orientations):
        np.testing.assert_array_equal(image.numpy(), load_image(tf.constant(f), SIZE, fmt, o, 1 if fmt == 1 else None).numpy())


def test_train_lists_skipped_files_uses_options_and_class_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny real run through the CLI: random-init MobileNet at 32 px, one epoch."""
    from transferkit.cli import main

    root = make_class_folder(tmp_path / "data", {"a": 12, "b": 6})
    write(root / "a" / "zz_broken.jpg", truncated_jpeg())
    write(root / "b" / "empty.jpg", b"")
    out = tmp_path / "run"
    code = main([
        "train", "--base", "mobilenet_v1_025", "--data", str(root), "--out", str(out), "--image-size", "32",
        "--epochs", "1", "--batch-size", "8", "--quiet",
        "--test-split", "0.2", "--class-weight", "auto", "--augment", "flip,contrast=0.1",
    ])
    assert code == 0
    skipped = (out / "skipped.txt").read_text()
    assert "zz_broken.jpg\tcannot be decoded" in skipped and "empty.jpg\tempty file" in skipped
    config = json.loads((out / "config.json").read_text())
    assert config["data_options"]["class_weight"] == "auto" and config["data_options"]["augment_spec"] == "flip,contrast=0.1"
    splits = (out / "split.csv").read_text()
    assert ",test\n" in splits and "zz_broken" not in splits
