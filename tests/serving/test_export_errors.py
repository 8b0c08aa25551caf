"""Bad input to `export` and `predict --model`: one line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.cli import main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lone .keras file (no run folder, so no training images) of a 32 px three-class model."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x))
    model.layers[-1].set_weights([np.eye(3, dtype="float32") * 4, np.zeros(3, "float32")])
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    model.save(path)
    return path


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str, *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"transferkit {command}: error:"), err
    for word in words:
        assert word in err[0], err[0]
    return err[0]


def _nothing_written(root: Path, before: set[Path]) -> None:
    assert set(root.rglob("*")) == before, set(root.rglob("*")) - before


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--format", "pmml"], ["unknown export format 'pmml'", "tflite"]),
        (["--format", "onnx", "--quantize", "int8"], ["applies to --format tflite only"]),
        (["--format", "tflite", "--quantize", "int4"], ["unknown quantization 'int4'"]),
        (["--format", "tflite", "--quantize", "int8"], ["calibrates on the run's training images", "has none"]),
        (["--min-agreement", "1.5"], ["fraction in [0, 1]"]),
    ],
)
def test_bad_export_flags(tiny_model: Path, flags: list[str], words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    before = set(tiny_model.parent.rglob("*"))
    assert main(["export", str(tiny_model), *flags]) == 2
    _one_line_error(capsys, "export", *words)
    _nothing_written(tiny_model.parent, before)


def test_a_folder_that_is_not_a_run_or_saved_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    before = set(tmp_path.rglob("*"))
    assert main(["export", str(folder), "--format", "keras"]) == 2
    _one_line_error(capsys, "export", "a run folder or a .keras file (or an exported SavedModel folder)", str(folder))
    assert main(["predict", str(folder / "notes.txt"), "--model", str(folder)]) == 2
    _one_line_error(capsys, "predict", "exported SavedModel folder")
    _nothing_written(tmp_path, before)


def test_a_missing_optional_runtime_names_the_pip_command(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    before = set(tiny_model.parent.rglob("*"))
    assert main(["export", str(tiny_model), "--format", "onnx"]) == 2
    _one_line_error(capsys, "export", "needs onnxruntime", 'pip install "transferkit[export]"')
    _nothing_written(tiny_model.parent, before)


def test_an_existing_output_is_refused_unless_overwrite(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exported"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["export", str(tiny_model), "--format", "keras", "--out", str(out)]) == 2
    _one_line_error(capsys, "export", "already exists", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert main(["export", str(tiny_model), "--format", "keras", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "labels.txt", "model.keras"]
    assert not list(tmp_path.glob(".*"))


def test_export_of_an_exported_saved_model_is_refused(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sm"
    assert main(["export", str(tiny_model), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "--format", "tflite", "--out", str(tmp_path / "again")]) == 2
    _one_line_error(capsys, "export", "is an exported SavedModel")
    assert not (tmp_path / "again").exists()
