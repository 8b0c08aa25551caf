"""Progress bars for long scans (indexing, decode-cache passes, feature extraction, the doctor):
tqdm on stderr, shown only on a terminal, so logs and pipes stay free of redraws."""

from __future__ import annotations

import sys
import threading
from typing import Any


class ProgressBar:
    """``with ProgressBar(total, "decoding") as bar: ... bar.add(n)``; thread-safe, and nothing at
    all unless ``enabled``, ``total`` is positive and stderr is a terminal."""

    def __init__(self, total: int, desc: str, unit: str = "img", enabled: bool = True, stream: Any = None) -> None:
        stream = sys.stderr if stream is None else stream
        self.bar = None
        self._lock = threading.Lock()
        isatty = getattr(stream, "isatty", None)
        if enabled and total > 0 and isatty is not None and isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, file=stream, leave=False, desc=desc)

    def __bool__(self) -> bool:
        return self.bar is not None

    def add(self, n: int) -> None:
        if self.bar is not None:
            with self._lock:
                self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
