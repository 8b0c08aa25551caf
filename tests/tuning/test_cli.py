"""``transferkit tune``: bad input is one line on stderr, exit 2, nothing written; a small search
from the command line writes its run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transferkit.cli import main


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], message: str, root: Path) -> None:
    before = sorted(root.rglob("*"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("transferkit tune: error: ") and message in err, err
    assert sorted(root.rglob("*")) == before  # nothing written


@pytest.mark.parametrize(
    "space_text, base, message",
    [
        ('{"depth": [10, 16], "colour": ["red"]}', "wrn_16_2", "has no hyperparameter 'colour'; valid: base, lr"),
        ('{"depth": [10, 16],, }', "wrn_16_2", "is not valid JSON: Expecting"),
        ('{"alpha": [0.5, 1.0]}', "wrn_16_2", "wrn_16_2 (wide_resnet) has no hyperparameter 'alpha'"),
        ('{"width": [1, 2]}', "resnet20", "resnet20 (resnet) has no hyperparameter 'width'"),
        ('[1, 2]', "wrn_16_2", "must hold a JSON object"),
        ('{"depth": [11]}', "wrn_16_2", "6n+4"),
    ],
)
def test_bad_space_files(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str], space_text: str, base: str, message: str
) -> None:
    space = _write(tmp_path / "space.json", space_text)
    argv = ["tune", "--base", base, "--data", str(tiny_data), "--space", str(space), "--out", str(tmp_path / "run")]
    _fails(capsys, argv, message, tmp_path)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-trials", "0"], "max_trials must be a whole number of at least 1, got 0"),
        (["--epochs", "0"], "epochs must be a whole number of at least 1"),
        (["--space-preset", "huge"], "unknown space preset 'huge'"),
        (["--space", "missing.json"], "does not exist"),
        (["--resume"], "nothing to resume"),
        (["--resume", "--overwrite"], "not both"),
        (["--base", "vgg16"], "no space for vgg"),
        (["--weights", "imagenet", "--base", "mobilenet_v1_025"], "changes its architecture"),
    ],
)
def test_bad_options(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["tune", "--base", "wrn_16_2", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *extra]
    _fails(capsys, argv, message, tmp_path)


def test_existing_out_is_refused(tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run").mkdir()
    argv = ["tune", "--base", "wrn_16_2", "--data", str(tiny_data), "--out", str(tmp_path / "run")]
    _fails(capsys, argv, "already exists", tmp_path)


def test_tune_command_writes_the_run(tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = _write(tmp_path / "space.json", json.dumps({"width": [1, 2], "dropout": [0.0, 0.2]}))
    out = tmp_path / "run"
    argv = [
        "tune", "--base", "wrn_10_1", "--data", str(tiny_data), "--space", str(space), "--max-trials", "1",
        "--epochs", "1", "--batch-size", "8", "--val-split", "0.25", "--no-augment", "--out", str(out),
        "--tuner", "bayesian", "--quiet",
    ]
    assert main(argv) == 0
    assert f"-> {out}" in capsys.readouterr().out
    best = json.loads((out / "best_hyperparameters.json").read_text())
    assert set(best) == {"width", "dropout"}
    assert len(json.loads((out / "trials.json").read_text())) == 1
