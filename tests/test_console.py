"""The command line is quiet by default: no TensorFlow native logs on stderr, no progress-bar
escapes in a pipe (one line per epoch), ``--verbose`` shows the native logs, and ``--help`` loads
no TensorFlow."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from transferkit.cli import console

ROOT = Path(__file__).resolve().parents[1]
NATIVE = re.compile(r"I0000|E0000|W0000|oneDNN|cuda|absl::InitializeLog", re.I)
ANSI = re.compile(r"\x1b\[")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # TensorFlow's own default
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _transferkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transferkit", *args], capture_output=True, text=True, cwd=cwd, env=_env()
    )


def test_piped_finetune_is_quiet_with_one_line_per_epoch(tmp_path: Path) -> None:
    # A pipe is not a terminal: Keras' verbose=2, one line per epoch, no ANSI escapes.
    out = tmp_path / "run"
    result = _transferkit(
        "finetune", "--data", "sample", "--out", str(out), "--image-size", "96", "--epochs", "2",
        "--fine-tune-epochs", "1", "--batch-size", "16", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if NATIVE.search(line)], result.stderr
    assert not ANSI.search(result.stdout + result.stderr)
    epochs = [line for line in result.stdout.splitlines() if re.match(r"Epoch \d+/\d+$", line)]
    assert len(epochs) == 3  # 2 head epochs + 1 fine-tune epoch, each announced once
    # verbose=2: each epoch is its "Epoch i/n" line and one line of metrics, nothing partial.
    assert len(result.stdout.splitlines()) <= 2 * len(epochs) + 6, result.stdout
    assert "\r" not in result.stdout
    # Every phase knows its steps (undecodable files are counted out before training starts).
    steps = [line for line in result.stdout.splitlines() if re.match(r"\d+/\d+ - ", line)]
    assert len(steps) == len(epochs) and "Unknown" not in result.stdout, result.stdout


def test_verbose_shows_the_native_logs(tmp_path: Path) -> None:
    quiet = _transferkit("models", "--family", "lenet", cwd=tmp_path)
    loud = _transferkit("models", "--family", "lenet", "--verbose", cwd=tmp_path)
    assert quiet.returncode == loud.returncode == 0
    assert quiet.stdout == loud.stdout and "lenet5" in quiet.stdout
    assert not NATIVE.search(quiet.stderr), quiet.stderr
    # TensorFlow prints its CPU-feature notice at start-up whatever the machine; without the
    # filter it would be there.
    assert NATIVE.search(loud.stderr), loud.stderr


def test_help_does_not_import_tensorflow() -> None:
    script = (
        "import sys\n"
        "from transferkit.cli import main\n"
        "for argv in (['--help'], ['finetune', '--help'], ['train', '--help'], ['export', '--help'], ['run', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert 'keras' not in sys.modules, 'keras was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr


def test_filter_drops_native_lines_and_keeps_the_rest_in_order(capfd: pytest.CaptureFixture[str]) -> None:
    lines = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        b"I0000 00:00:1796090791.898056    3420 cudart_stub.cc:31] Could not find cuda drivers.\n",
        b"transferkit: phase 1, training the new head\n",
        b"E0000 00:00:1796090755.800414    3046 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n",
        b"2026-12-01 02:00:00.123456: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.\n",
        b"progress 1/2\r",
        b"progress 2/2\n",
        b"a user's I0000-looking words stay\n",
    ]
    with console.native_logs_filtered():
        for line in lines:
            os.write(2, line)
    err = capfd.readouterr().err
    assert err == "transferkit: phase 1, training the new head\nprogress 1/2\rprogress 2/2\na user's I0000-looking words stay\n"


def test_progress_is_bars_on_a_terminal_only() -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    class Pipe:
        def isatty(self) -> bool:
            return False

    assert console.progress_verbosity(False, Tty()) == 1
    assert console.progress_verbosity(False, Pipe()) == 2
    assert console.progress_verbosity(True, Tty()) == 0


def test_long_scans_show_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    import io

    from transferkit.data.progress import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, piped = Terminal(), io.StringIO()
    for stream in (shown, piped):
        with ProgressBar(10, "decoding", stream=stream) as bar:
            for _ in range(10):
                bar.add(1)
    assert "decoding" in shown.getvalue() and "/10" in shown.getvalue()
    assert piped.getvalue() == ""


def test_doctor_on_a_terminal_draws_its_bar_and_in_a_pipe_does_not(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    out = tmp_path / "doctor.json"
    args = [sys.executable, "-m", "transferkit", "doctor", "--data", "sample", "--out", str(out)]
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real terminal has a size
    try:
        code = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=secondary, env=_env(), cwd=tmp_path).returncode
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
    assert code == 0 and "/60 [" in b"".join(chunks).decode(errors="replace")  # a bar over the sample's 60 photos
    piped = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert piped.returncode == 0 and "img/s" not in piped.stderr and "\r" not in piped.stderr
