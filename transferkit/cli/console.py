"""What the command line shows: TensorFlow's native start-up logs filtered out of stderr, and
Keras progress bars only on a terminal (one line per epoch when the output is a file or a pipe).

TensorFlow's C++ and absl logs (``I0000 ... cudart_stub.cc``, ``E0000 ... failed call to cuInit``,
oneDNN notices, "All log messages before absl::InitializeLog()") are written straight to file
descriptor 2 from C++, before and regardless of ``TF_CPP_MIN_LOG_LEVEL``, so they cannot be
silenced from Python's ``sys.stderr``. :func:`native_logs_filtered` puts a pipe in front of
descriptor 2 for the duration of a command and passes on every line except those; Python's own
``sys.stderr`` keeps writing to the original stream.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

# Lines TensorFlow, XLA, absl and CUDA stubs print on start-up and device initialisation.
NATIVE_NOISE = re.compile(
    rb"^(?:[IWE]\d{4} [\d:. ]+\d+ \S+\.(?:cc|h):\d+\]"  # absl/glog: I0000 00:00:... 123 file.cc:31]
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] (?:tensorflow|external|xla)/"  # TF's own C++ log
    rb"|.*oneDNN custom operations are on"
    rb"|.*rebuild TensorFlow with the appropriate compiler flags"
    rb"|To enable the following instructions: )"
)


_LINE_END = re.compile(rb"(\r\n|\n|\r)")


def progress_verbosity(quiet: bool, stream: object = None) -> int:
    """Keras ``verbose`` for a command: 0 when ``quiet``, progress bars (1) on a terminal, else one
    line per epoch (2) so logs and pipes get no ANSI escapes or partial lines."""
    if quiet:
        return 0
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 1 if isatty is not None and isatty() else 2


@contextlib.contextmanager
def native_logs_filtered(enabled: bool = True) -> Iterator[None]:
    """Within the block, lines written to file descriptor 2 that match :data:`NATIVE_NOISE` are
    dropped and every other line passes through unchanged (in order). Does nothing when not
    ``enabled`` or when descriptor 2 cannot be redirected."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError):
        yield
        return
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pass_lines, args=(read_end, saved), daemon=True)
    pump.start()
    # Python's own stderr (log lines, progress bars) goes straight to the original stream, which
    # keeps telling whether it is a terminal; only what native code writes to descriptor 2 passes
    # the filter. (A stderr that is not descriptor 2, as under a test's capture, is left alone.)
    python_err = sys.stderr
    if _fileno(python_err) == 2:
        sys.stderr = open(  # noqa: SIM115 - closed below
            os.dup(saved), "w", buffering=1, encoding=python_err.encoding, errors="backslashreplace"
        )
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        if sys.stderr is not python_err:
            sys.stderr.close()
            sys.stderr = python_err
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump reads to the end and stops
        pump.join()
        os.close(saved)


def _fileno(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None


def _pass_lines(read_end: int, out: int) -> None:
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        pending = b""
        while True:
            try:
                chunk = pipe.read(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            # Lines end at "\n", or at "\r" for progress bars redrawn in place (shown one redraw late).
            *parts, pending = _LINE_END.split(pending)
            lines = [parts[i] + parts[i + 1] for i in range(0, len(parts), 2)]
            _write(out, b"".join(line for line in lines if not NATIVE_NOISE.match(line)))
        if pending and not NATIVE_NOISE.match(pending):
            _write(out, pending)


def _write(out: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(out, data):]
        except OSError:
            return
