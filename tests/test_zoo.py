"""Checks parametrized over the registry itself: every registered name is built and run.

Each family pins the parameter count of every name it registers in ``tests/pinned/<family>.json``
(counts of ``create_model(name)``: the default input shape and the paper's number of classes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import transferkit as tk

PINNED_DIR = Path(__file__).parent / "pinned"
NAMES = tk.list_models()
LARGE = 30_000_000  # classifiers above this many parameters are in the slow set
VERY_DEEP = {"resnet1202"}  # few parameters but thousands of layers: about a minute per build


def _pinned() -> dict[str, int]:
    pinned: dict[str, int] = {}
    for path in sorted(PINNED_DIR.glob("*.json")):
        pinned.update(json.loads(path.read_text()))
    return pinned


PINNED = _pinned()


def _is_large(name: str) -> bool:
    return PINNED.get(name, 0) > LARGE or name in VERY_DEEP


def _params(names: list[str]) -> list[pytest.param]:
    return [
        pytest.param(n, marks=pytest.mark.slow) if _is_large(n) else pytest.param(n) for n in names
    ]


def _small_shape(info: tk.ModelInfo) -> tuple[int, int, int]:
    if info.fixed_input:
        return tuple(info.input_shape)
    size = max(info.min_size, 32)
    return (size, size, info.input_shape[2])


@pytest.mark.parametrize("name", _params(NAMES))
def test_parameter_count_is_pinned(name: str) -> None:
    assert name in PINNED, f"pin the parameter count of {name} in tests/pinned/<family>.json"
    assert tk.create_model(name).count_params() == PINNED[name]


@pytest.mark.parametrize("name", _params(NAMES))
def test_small_forward_pass(name: str) -> None:
    info = tk.get_model_info(name)
    shape = _small_shape(info)
    model = tk.create_model(name, num_classes=3, input_shape=shape)
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    # Untrained, a BatchNormalization layer in inference mode is the identity, so the 600
    # unnormalised residual additions of a very deep net overflow float32; from-scratch training
    # runs it with batch statistics, and so does this check.
    y = np.asarray(model(x, training=name in VERY_DEEP))
    assert y.shape == (2, 3)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    backbone = tk.create_backbone(name, input_shape=shape)
    assert len(backbone.output.shape) == 4


def test_every_pin_names_a_registered_model() -> None:
    stale = sorted(set(PINNED) - set(NAMES))
    assert not stale, f"pinned counts for unregistered names: {stale}"


def test_unknown_name_lists_closest() -> None:
    with pytest.raises(tk.ConfigError, match="closest: mobilenet"):
        tk.create_model("mobilenet_v1_26")
