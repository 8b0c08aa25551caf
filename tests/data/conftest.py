"""Fixtures of the data-layer tests (image builders live in data_images.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_images import make_class_folder


@pytest.fixture
def small_folder(tmp_path: Path) -> Path:
    """Two classes of 10 small JPEGs each."""
    return make_class_folder(tmp_path / "data", {"cats": 10, "dogs": 10})
