"""`transferkit finetune` end to end: accuracy, run folder, serving without transferkit, bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from transferkit.cli import main
from transferkit.data import SAMPLE_DIR

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hymenoptera_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run: mobilenet_v1_025, ImageNet weights, 224 px, the default two-phase recipe."""
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hymenoptera_train"
    if not data.exists():
        pytest.skip(f"{data} is absent (CI checks ../shared is present)")
    out = tmp_path_factory.mktemp("runs") / "ants"
    code = main(["finetune", "--base", "mobilenet_v1_025", "--data", str(data), "--out", str(out), "--image-size", "224", "--seed", "0", "--quiet"])
    assert code == 0
    return out


def test_finetune_reaches_092_on_held_out_split(hymenoptera_run: Path) -> None:
    metrics = json.loads((hymenoptera_run / "metrics.json").read_text())
    # Measured 45 to 47 of 49 across runs (0.918-0.959; training on several CPU threads is not
    # bit-reproducible, and one image is 2 points here).
    assert metrics["val_accuracy"] >= 0.9, metrics["val_accuracy"]
    assert metrics["num_train"] + metrics["num_val"] == 245
    phases = [row["phase"] for row in metrics["epochs"]]
    assert phases.count("head") >= 1 and phases.count("fine_tune") >= 1
    assert all({"loss", "accuracy", "val_loss", "val_accuracy"} <= set(row) for row in metrics["epochs"])


def test_default_recipe_freezes_all_but_the_last_stage(hymenoptera_run: Path) -> None:
    """The default two-phase recipe on the real photos: every weight below stage5 and every
    BatchNormalization statistic stays bit-identical to the ImageNet file; stage5's convolutions
    trained."""
    import keras

    import transferkit.models  # registers the custom layers model.keras uses
    from transferkit import transfer

    tuned = keras.saving.load_model(hymenoptera_run / "model.keras")
    pretrained = transferkit.models.build_model("mobilenet_v1_025", 2, "imagenet", 224)
    weighted = [l for l in transfer.base_layers(pretrained) if l.weights]
    frozen = [l.name for l in weighted if not l.name.startswith("stage5") or isinstance(l, keras.layers.BatchNormalization)]
    trained = [l.name for l in weighted if l.name not in frozen]
    assert "stage4_block6_pw_bn" in frozen and "stage5_block2_pw_bn" in frozen and "stage5_block2_pw" in trained
    for name in frozen:
        for a, b in zip(tuned.get_layer(name).get_weights(), pretrained.get_layer(name).get_weights()):
            assert np.array_equal(a, b), f"{name} changed"
    for name in trained:
        assert not np.array_equal(tuned.get_layer(name).get_weights()[0], pretrained.get_layer(name).get_weights()[0]), name


def test_run_folder_has_every_artifact(hymenoptera_run: Path) -> None:
    for name in ("saved_model", "model.keras", "labels.txt", "metrics.json", "history.csv", "config.json", "split.csv"):
        assert (hymenoptera_run / name).exists(), name
    assert (hymenoptera_run / "labels.txt").read_text().splitlines() == ["ants", "bees"]
    with open(hymenoptera_run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(json.loads((hymenoptera_run / "metrics.json").read_text())["epochs"])
    config = json.loads((hymenoptera_run / "config.json").read_text())
    assert config["base"] == "mobilenet_v1_025" and config["image_size"] == 224 and config["seed"] == 0
    assert config["class_names"] == ["ants", "bees"]
    with open(hymenoptera_run / "split.csv") as f:
        splits = [row["split"] for row in csv.DictReader(f)]
    assert splits.count("val") == json.loads((hymenoptera_run / "metrics.json").read_text())["num_val"]
    assert not list(hymenoptera_run.parent.glob(".*partial"))


def test_saved_model_serves_without_transferkit(hymenoptera_run: Path, tmp_path: Path) -> None:
    import keras

    model = keras.saving.load_model(hymenoptera_run / "model.keras")
    # Whole 0-255 values, as photos have: the signature rounds its resized squares as training does.
    x = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = model.predict(x, verbose=0)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["transferkit"] = None  # make `import transferkit` fail
        try:
            import transferkit
        except ImportError:
            pass
        else:
            raise SystemExit("transferkit is importable")
        import numpy as np, tensorflow as tf
        served = tf.saved_model.load({str(hymenoptera_run / "saved_model")!r})
        fn = served.signatures["serving_default"]
        x = np.load({str(tmp_path / "x.npy")!r})
        out = fn(images=tf.constant(x))["probabilities"].numpy()
        np.save({str(tmp_path / "y.npy")!r}, out)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    served = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(served, expected, atol=1e-5)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=1e-5)


def test_builtin_sample_runs_offline(tmp_path: Path, empty_keras_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sample_run"
    code = main(["finetune", "--data", "sample", "--out", str(out), "--epochs", "2", "--fine-tune-epochs", "1", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "validation accuracy:" in printed and str(out) in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_train"] + metrics["num_val"] == 60
    assert not list(empty_keras_home.rglob("*.h5"))  # the bundled copy was used, nothing downloaded


# --- bad input: one line, exit code 2, no traceback, nothing written -----------------------


def _classes(root: Path, counts: dict[str, int], source: Path) -> Path:
    photos = sorted(p for p in (source / "ants").iterdir() if p.suffix == ".jpg")
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for photo in photos[:n]:
            shutil.copy(photo, root / cls / photo.name)
    return root


def _bad(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expect: str) -> None:
    out = tmp_path / "out_run"
    code = main(["finetune", "--out", str(out), "--quiet", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("transferkit finetune: error:"), err
    assert expect in err[0]
    assert not out.exists() and not list(tmp_path.glob(".out_run*"))


def test_unknown_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _bad(tmp_path, capsys, ["--base", "resnet5O", "--data", "sample"], "unknown model 'resnet5O'")


def test_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _bad(tmp_path, capsys, ["--data", str(tmp_path / "nope")], "does not exist")


def test_data_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "photo.jpg"
    f.write_bytes(b"\xff\xd8\xff")
    _bad(tmp_path, capsys, ["--data", str(f)], "is a file")


def test_fewer_than_two_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _classes(tmp_path / "one", {"ants": 4}, SAMPLE_DIR)
    _bad(tmp_path, capsys, ["--data", str(data)], "at least 2 class sub-folders")


def test_class_folder_without_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _classes(tmp_path / "d", {"ants": 4, "bees": 4}, SAMPLE_DIR)
    (data / "wasps").mkdir()
    (data / "wasps" / "notes.txt").write_text("no photos yet")
    _bad(tmp_path, capsys, ["--data", str(data)], "wasps")


def test_existing_out_is_refused_unless_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code = main(["finetune", "--data", "sample", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0]
    assert (out / "keep.txt").read_text() == "precious"


def test_image_size_the_architecture_cannot_take(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _bad(tmp_path, capsys, ["--data", "sample", "--image-size", "16"], "at least 32x32")


def test_console_error_has_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "finetune", "--base", "nonet", "--data", "sample", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("transferkit finetune: error: unknown model 'nonet'")
    assert not (tmp_path / "o").exists()


def test_models_command_lists_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "mobilenet*"]) == 0
    out = capsys.readouterr().out
    assert "mobilenet_v1_025" in out and "475,544" in out and "imagenet" in out
