"""Shared fixtures: offline Keras cache with the real ImageNet file, real photos, quiet TF logs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
HYMENOPTERA = SHARED / "data" / "hymenoptera_train"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (CI checks ../shared is present next to the checkout)")
    return path


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary KERAS_HOME whose models/ cache holds the real MobileNet-0.25 ImageNet file."""
    _require(SHARED_WEIGHTS)
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    shutil.copy(SHARED_WEIGHTS, home / "models" / SHARED_WEIGHTS.name)
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def module_keras_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``keras_home`` for module-scoped fixtures (a run shared by several tests)."""
    _require(SHARED_WEIGHTS)
    home = tmp_path_factory.mktemp("keras_home")
    (home / "models").mkdir()
    shutil.copy(SHARED_WEIGHTS, home / "models" / SHARED_WEIGHTS.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(home))
        yield home


@pytest.fixture
def empty_keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary, empty KERAS_HOME (nothing cached, so loading must download or fail)."""
    home = tmp_path / "empty_keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def hymenoptera() -> Path:
    """The real ants/bees photos (read only: copy before changing anything)."""
    return _require(HYMENOPTERA)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core this process may use, at most 4 (each worker holds its own
    TensorFlow and models of up to a few GB; past 4 the suite is bound by its longest files)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # macOS has no affinity
    return max(1, min(cores or 1, 4))
