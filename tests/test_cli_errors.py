"""The command line never shows a raw traceback: a user error is one line and exit code 2; an
internal error is one line naming a log file that holds the traceback, and exit code 1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from transferkit.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = str(REPO / "transferkit" / "assets" / "sample")
# What TensorFlow's C++ runtime writes to stderr when a new process imports it (not ours).
TF_RUNTIME_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\])")

# (arguments, part of the one line); {tmp} is the test's temporary folder, which holds notes.txt
# (not a model), empty/ (not a run folder) and run/ (holding a model.keras). Every command, every
# kind of mistake.
BAD_INPUTS = [
    (["finetune", "--data", "{tmp}/nope"], "'{tmp}/nope' does not exist"),
    (["finetune", "--base", "nonet", "--data", "sample"], "unknown model 'nonet'"),
    (["finetune", "--data", "sample", "--lr-mult", "stage4=x"], "--lr-mult takes a number"),
    (["finetune", "--data", "sample", "--lr-mult", "-1"], "must be >= 0"),
    (["finetune", "--data", "sample", "--batch-size", "0"], "--batch-size: expected a number of at least 1"),
    (["extract", "--data", "{tmp}/nope"], "'{tmp}/nope' does not exist"),
    (["extract", "--base", "nonet", "--data", "sample"], "unknown model 'nonet'"),
    (["extract", "--data", "sample", "--hidden-units", "a,b"], "--hidden-units takes numbers"),
    (["predict", "{tmp}/nope.jpg"], "'{tmp}/nope.jpg' is neither an image, a folder nor a CSV"),
    (["predict", SAMPLE, "--model", "{tmp}/notes.txt"], "--model must be a run folder or a .keras file"),
    (["predict", SAMPLE, "--model", "{tmp}/empty"], "--model must be a run folder or a .keras file"),
    (["predict", SAMPLE, "--base", "nonet"], "unknown model 'nonet'"),
    (["predict", "{tmp}/run", SAMPLE], "'{tmp}/run' is a model (a run folder, .keras file or exported SavedModel), not images; pass it as --model {tmp}/run"),
    (["predict", SAMPLE, "{tmp}/run/model.keras", "--model", "{tmp}/run"], "'{tmp}/run/model.keras' is a model"),
    (["evaluate", "--data", "{tmp}/nope"], "'{tmp}/nope' does not exist"),
    (["evaluate", "--data", "sample", "--model", "{tmp}/empty"], "--model must be a run folder or a .keras file"),
    (["evaluate", "--data", "sample", "--model", "{tmp}/notes.txt"], "--model must be a run folder or a .keras file"),
    (["evaluate", "--data", "sample", "--map", "ants=antt,bees=bee"], "no ImageNet class is called 'antt'"),
    (["evaluate", "--data", "sample", "--map", "ants=ant"], "the class map has no entry for 'bees'"),
    (["evaluate", "--data", "sample", "--map", "ants"], "--map takes user=imagenet pairs"),
    (["evaluate", "--data", "sample"], "pass --map"),
    (["evaluate", "--data", "sample", "--map", "ants=ant,bees=bee", "--base", "nonet"], "unknown model 'nonet'"),
    (["doctor", "--data", "{tmp}/nope"], "'{tmp}/nope' does not exist"),
    (["tune", "--base", "nonet", "--data", "sample"], "unknown model 'nonet'"),
    (["tune", "--base", "resnet20", "--data", "{tmp}/nope"], "'{tmp}/nope' does not exist"),
    (["tune", "--base", "resnet20", "--data", "sample", "--space", "{tmp}/space.json"], "'{tmp}/space.json' does not exist"),
    (["finetune", "--data", "sample", "--drop-path", "0.1"], "mobilenet_v1_025 has no residual blocks for drop_path to drop"),
    (["train", "--base", "resnet20", "--data", "sample", "--drop-path", "1.5"], "drop_path must be in [0, 1)"),
    (["finetune", "--data", "sample", "--ema", "1.5"], "ema momentum must be between 0 and 1"),
    (["train", "--data", "sample", "--ema", "0"], "ema momentum must be between 0 and 1"),
    (["finetune", "--data", "sample", "--label-smoothing", "1"], "label_smoothing must be in [0, 1)"),
    (["finetune", "--data", "sample", "--augment", "flip,mixup=0"], "mixup takes a positive alpha"),
    (["train", "--data", "sample", "--augment", "cutmix=x"], "augmentation cutmix takes a number"),
    (["evaluate", "--data", "sample", "--map", "ants=ant,bees=bee", "--tta", "mirror"], "invalid choice: 'mirror'"),
    (["models", "--params"], "unrecognized arguments: --params"),
    (["finetun", "--data", "sample"], "invalid choice: 'finetun'"),
]
WRITES = {"finetune": "--out", "train": "--out", "extract": "--out", "tune": "--out", "doctor": "--out", "predict": "--output", "evaluate": "--output"}


@pytest.mark.parametrize("args, expect", BAD_INPUTS, ids=[" ".join(a).replace(SAMPLE, "SAMPLE") for a, _ in BAD_INPUTS])
def test_user_error_is_one_line_and_exit_2(
    args: list[str], expect: str, tmp_path: Path, empty_keras_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "empty").mkdir()
    (tmp_path / "run").mkdir()  # a run folder, as far as a glance can tell
    (tmp_path / "run" / "model.keras").write_text("not opened")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = tmp_path / "out"
    if argv[0] in WRITES:
        argv += [WRITES[argv[0]], str(out)]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert re.match(r"transferkit( \w+)?: error: ", err[0]), err
    assert expect.replace("{tmp}", str(tmp_path)) in err[0]
    assert not out.exists()


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom\nsecond line")


def test_internal_error_is_one_line_naming_a_log_with_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import transferkit.inference

    monkeypatch.setattr(transferkit.inference, "select_images", _boom)
    monkeypatch.setenv("TRANSFERKIT_LOG_DIR", str(tmp_path / "logs"))
    code = main(["evaluate", "--data", "sample", "--map", "ants=ant,bees=bee"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("transferkit evaluate: internal error (RuntimeError: boom)")
    log = Path(re.search(r"the traceback is in (\S+);", err[0]).group(1))
    assert log.parent == tmp_path / "logs" and log.is_file()
    text = log.read_text()
    assert text.splitlines()[0] == "transferkit evaluate --data sample --map ants=ant,bees=bee"
    assert "Traceback (most recent call last)" in text and "in _boom" in text and "RuntimeError: boom" in text


def test_internal_error_when_no_log_can_be_written_is_still_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import transferkit.inference

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setattr(transferkit.inference, "select_images", _boom)
    monkeypatch.setenv("TRANSFERKIT_LOG_DIR", str(blocker / "logs"))
    assert main(["evaluate", "--data", "sample", "--map", "ants=ant,bees=bee"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error (RuntimeError: boom)" in err[0] and "no log could be written" in err[0], err


def _ours(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not TF_RUNTIME_LINE.match(line)]


def test_console_user_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    result = subprocess.run(
        [sys.executable, "-m", "transferkit", "evaluate", "--data", "sample", "--model", str(tmp_path / "notes.txt")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 2
    lines = _ours(result.stderr)
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("transferkit evaluate: error: --model must be a run folder"), result.stderr


def test_console_internal_error(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        import transferkit.inference

        def boom(*args, **kwargs):
            raise RuntimeError("boom")

        transferkit.inference.select_images = boom
        from transferkit.cli import main
        sys.exit(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "evaluate", "--data", "sample", "--map", "ants=ant,bees=bee"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "TRANSFERKIT_LOG_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = _ours(result.stderr)
    assert len(lines) == 1 and "internal error (RuntimeError: boom)" in lines[0], result.stderr
    logs = list(tmp_path.glob("evaluate-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    assert "RuntimeError: boom" in logs[0].read_text()
