"""AlexNet: per-layer counts against the paper's 60 million, the two towers, LRN.

Gradients, config and .keras round trips and freezing by stage: tests/test_zoo.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import transferkit as tk
from transferkit.models import alexnet as a

SMALL = (a.MIN_SIZE, a.MIN_SIZE, 3)
STAGE_NAMES = tuple(name for name, _ in a.STAGES)


# (layer, weights + biases with the two towers, output map) at 227x227, 1000 classes.
LAYERS = {
    "stage1_conv": (11 * 11 * 3 * 96 + 96, (55, 55, 96)),
    "stage2_conv": (5 * 5 * 48 * 256 + 256, (27, 27, 256)),
    "stage3_conv": (3 * 3 * 256 * 384 + 384, (13, 13, 384)),
    "stage4_conv": (3 * 3 * 192 * 384 + 384, (13, 13, 384)),
    "stage5_conv": (3 * 3 * 192 * 256 + 256, (13, 13, 256)),
    "head_fc1": (6 * 6 * 256 * 4096 + 4096, (4096,)),
    "head_fc2": (4096 * 4096 + 4096, (4096,)),
    "predictions": (4096 * 1000 + 1000, (1000,)),
}


@pytest.mark.slow
def test_counts_against_paper() -> None:
    model = tk.create_model("alexnet")
    for name, (count, shape) in LAYERS.items():
        layer = model.get_layer(name)
        assert layer.count_params() == count, name
        assert layer.output.shape[1:] == shape, name
    assert model.get_layer("stage5_pool").output.shape[1:] == (6, 6, 256)
    total = model.count_params()
    assert total == sum(c for c, _ in LAYERS.values()) == 60_965_224
    # The paper: "60 million parameters" (rounded); ours is 1.6% above.
    assert total == pytest.approx(a.PAPER_PARAMS, rel=0.02)


def test_one_tower_form_adds_the_cross_tower_kernels() -> None:
    two = tk.create_backbone("alexnet", input_shape=SMALL).count_params()
    one = tk.create_backbone("alexnet", input_shape=SMALL, groups=1).count_params()
    cross = 5 * 5 * 48 * 256 + 3 * 3 * 192 * 384 + 3 * 3 * 192 * 256
    assert one - two == cross


def test_grouped_conv_is_two_towers() -> None:
    """conv2 with groups=2 equals two convolutions on the halves of the maps, concatenated."""
    backbone = tk.create_backbone("alexnet", input_shape=SMALL)
    conv = backbone.get_layer("stage2_conv")
    kernel, bias = conv.get_weights()
    x = np.random.default_rng(1).normal(size=(1, 7, 7, 96)).astype("float32")
    towers = [
        tf.nn.conv2d(x[..., 48 * t : 48 * (t + 1)], kernel[..., 128 * t : 128 * (t + 1)], 1, "SAME")
        for t in range(2)
    ]
    expected = tf.nn.relu(tf.concat(towers, axis=-1) + bias)
    np.testing.assert_allclose(conv(x), expected, atol=1e-4)


def test_lrn_pooling_and_bias_init_follow_the_paper() -> None:
    backbone = tk.create_backbone("alexnet", input_shape=SMALL)
    for name in ("stage1_lrn", "stage2_lrn"):
        lrn = backbone.get_layer(name)
        assert isinstance(lrn, tk.models.layers.LocalResponseNormalization)
        assert (lrn.size, lrn.k, lrn.alpha, lrn.beta) == (5, 2.0, 1e-4, 0.75)
    for name in ("stage1_pool", "stage2_pool", "stage5_pool"):
        pool = backbone.get_layer(name)
        assert pool.pool_size == (3, 3) and pool.strides == (2, 2)  # overlapping
    biases = {n: backbone.get_layer(f"{n}_conv").get_weights()[1] for n in STAGE_NAMES}
    for name, value in (("stage1", 0), ("stage2", 1), ("stage3", 0), ("stage4", 1), ("stage5", 1)):
        assert (biases[name] == value).all(), name
    assert [backbone.get_layer(f"{n}_conv").groups for n in STAGE_NAMES] == [1, 2, 1, 2, 2]
    info = tk.get_model_info("alexnet")
    assert info.head == {"pooling": "flatten", "hidden_units": (4096, 4096), "dropout": 0.5}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (a.MIN_SIZE - 1, a.MIN_SIZE - 1, 3)},
        {"input_shape": (64, 64, 3)},
        {"groups": 3},
        {"groups": 0},
        {"groups": 2.0},
    ],
)
def test_invalid_combinations_raise(kwargs: dict) -> None:
    with pytest.raises(tk.ConfigError):
        tk.create_backbone("alexnet", **{"input_shape": SMALL, **kwargs})


def test_smallest_input_gives_a_1x1_map() -> None:
    backbone = tk.create_backbone("alexnet", input_shape=SMALL)
    assert backbone.output.shape[1:] == (1, 1, 256)
