"""Subprocesses of the distributed tests: free ports, and waiting for peers without a time limit."""

from __future__ import annotations

import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_together(procs: list[subprocess.Popen]) -> None:
    """Waits for every process, however long a loaded machine takes; once one fails, ends the
    others, which would otherwise wait for their crashed peer forever."""
    while any(p.poll() is None for p in procs):
        if any(p.returncode not in (None, 0) for p in procs):
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.5)
    for p in procs:
        p.wait()
