"""LeNet-5: the paper's 60,000 trainable parameters, Table I, scaled tanh, RBF output.

Gradients, config and .keras round trips and freezing by stage: tests/test_zoo.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import keras
import transferkit as tk
from transferkit.models import lenet
from zoo_helpers import assert_gradients_reach_every_weight

SHAPE = (32, 32, 1)


def _images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (n, *SHAPE)).astype("float32")


def _trainable(layer: keras.layers.Layer) -> int:
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


# Section II-B: trainable parameters of each layer of the paper's network.
PAPER_LAYERS = {
    "stage1_c1": 156,
    "stage1_s2": 12,
    "stage2_c3": 1_516,
    "stage2_s4": 32,
    "stage3_c5": 48_120,
    "head_fc1": 10_164,  # F6
    "predictions": 0,  # RBF centres are fixed
}


@pytest.mark.parametrize(("layer", "paper"), PAPER_LAYERS.items())
def test_faithful_layer_params_match_paper(layer: str, paper: int) -> None:
    model = tk.create_model("lenet5_faithful")
    assert _trainable(model.get_layer(layer)) == paper


def test_faithful_has_the_papers_60000_trainable_parameters() -> None:
    model = tk.create_model("lenet5_faithful")
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == lenet.PAPER_PARAMS
    assert model.count_params() == 60_000 + 84 * 10  # plus the fixed RBF centres
    assert [w.path for w in model.non_trainable_weights] == ["predictions/centres"]


def test_modern_form_differs_from_paper_by_its_changes() -> None:
    count = tk.create_model("lenet5").count_params()
    full_c3 = 16 * 6 * 25 - 60 * 25  # every C3 map sees all six S2 maps
    dense_output = 84 * 10 + 10  # trainable, vs 0 for the fixed RBF
    no_subsampling_weights = -(12 + 32)  # max pooling has no coefficients
    assert count == lenet.PAPER_PARAMS + full_c3 + dense_output + no_subsampling_weights == 61_706


def test_c3_connection_table_is_table_one() -> None:
    model = tk.create_model("lenet5_faithful")
    kernel = np.asarray(model.get_layer("stage2_c3").full_kernel())
    assert kernel.shape == (5, 5, 6, 16)
    connected = np.abs(kernel).sum(axis=(0, 1)) > 0  # (S2 map, C3 map)
    expected = np.zeros((6, 16), bool)
    for j, inputs in enumerate(lenet.C3_TABLE):
        expected[list(inputs), j] = True
    np.testing.assert_array_equal(connected, expected)
    # Table I: six maps take 3 contiguous maps, six take 4 contiguous, three take 4
    # discontinuous, one takes all six.
    assert [len(t) for t in lenet.C3_TABLE] == [3] * 6 + [4] * 9 + [6]
    assert expected.sum() == 60


def test_c3_equals_a_masked_dense_convolution() -> None:
    layer = lenet.TableConv2D(lenet.C3_TABLE, 5)
    x = np.random.default_rng(1).normal(size=(2, 14, 14, 6)).astype("float32")
    y = np.asarray(layer(x))
    reference = tf.nn.conv2d(x, layer.full_kernel(), 1, "VALID") + layer.bias
    np.testing.assert_allclose(y, reference, atol=1e-5)


def test_subsampling_is_coefficient_times_window_sum_plus_bias() -> None:
    layer = lenet.Subsampling(2)
    x = np.random.default_rng(2).normal(size=(1, 4, 4, 3)).astype("float32")
    layer.build(x.shape)
    layer.coefficient.assign([0.5, -1.0, 2.0])
    layer.bias.assign([0.1, 0.2, 0.3])
    sums = x.reshape(1, 2, 2, 2, 2, 3).sum(axis=(2, 4))
    np.testing.assert_allclose(layer(x), sums * [0.5, -1.0, 2.0] + [0.1, 0.2, 0.3], atol=1e-5)


def test_scaled_tanh_maps_one_to_one() -> None:
    y = np.asarray(lenet.scaled_tanh(np.array([-1.0, 0.0, 1.0, 50.0], "float32")))
    np.testing.assert_allclose(y[:3], [-1.0, 0.0, 1.0], atol=2e-4)
    assert y[3] == pytest.approx(1.7159)


def test_rbf_codes_are_distinct_plus_minus_one_7x12_bitmaps() -> None:
    codes = lenet.digit_codes()
    assert codes.shape == (84, 10)
    assert set(np.unique(codes)) == {-1.0, 1.0}
    assert len({c.tobytes() for c in codes.T}) == 10
    # "1" is a vertical bar: column 3 of rows 1-10 is on.
    assert (codes[:, 1].reshape(12, 7)[1:11, 3] == 1).all()
    other = lenet.rbf_codes(84, 26)
    assert other.shape == (84, 26) and set(np.unique(other)) == {-1.0, 1.0}


def test_faithful_outputs_are_rbf_penalties() -> None:
    model = tk.create_model("lenet5_faithful", activation=None)
    x = _images()
    penalties = np.asarray(model(x))
    f6 = keras.Model(model.input, model.get_layer("head_fc1").output)(x)
    expected = ((np.asarray(f6)[:, :, None] - lenet.digit_codes()[None]) ** 2).sum(axis=1)
    np.testing.assert_allclose(penalties, expected, rtol=1e-5)
    assert model.get_layer("head_fc1").activation is lenet.scaled_tanh
    # The default softmax head ranks classes by smallest penalty.
    soft = tk.create_model("lenet5_faithful")
    soft.set_weights(model.get_weights())
    probs = np.asarray(soft(x))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=1), penalties.argmin(axis=1))


def test_gradients_reach_each_c3_connection() -> None:
    """Each of the 60 kernels of C3's connection table gets a gradient (tests/test_zoo.py checks
    every weight as a whole)."""
    model = tk.create_model("lenet5_faithful", num_classes=3)
    grads = assert_gradients_reach_every_weight(model, _images())
    grad = np.asarray(grads[model.get_layer("stage2_c3").kernel.path])
    assert (np.abs(grad).sum(axis=(0, 1)) > 0).all()


def test_layer_names_and_kinds() -> None:
    faithful = tk.create_model("lenet5_faithful")
    modern = tk.create_model("lenet5")
    for name in ("stage1_c1", "stage1_s2", "stage2_c3", "stage2_s4", "stage3_c5"):
        faithful.get_layer(name)
        modern.get_layer(name)
    assert tk.transfer.stage_names(faithful) == ["stage1", "stage2", "stage3"]
    assert isinstance(faithful.get_layer("stage1_s2"), lenet.Subsampling)
    assert isinstance(faithful.get_layer("stage2_c3"), lenet.TableConv2D)
    assert isinstance(faithful.get_layer("predictions"), lenet.EuclideanRBF)
    assert isinstance(modern.get_layer("stage1_s2"), keras.layers.MaxPooling2D)
    assert modern.get_layer("stage3_c5").output.shape[1:] == (1, 1, 120)
    # faithful=True on lenet5 gives the same backbone as lenet5_faithful.
    a = tk.create_backbone("lenet5", faithful=True)
    b = tk.create_backbone("lenet5_faithful")
    assert [type(l) for l in a.layers] == [type(l) for l in b.layers]
    assert a.count_params() == b.count_params()
    assert tk.get_model_info("lenet").name == "lenet5"


def test_faithful_flag_gives_the_paper_head_too() -> None:
    flagged = tk.create_model("lenet5", faithful=True)
    named = tk.create_model("lenet5_faithful")
    assert isinstance(flagged.get_layer("predictions"), lenet.EuclideanRBF)
    assert [type(l) for l in flagged.layers] == [type(l) for l in named.layers]
    assert flagged.count_params() == named.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in flagged.trainable_weights)
    assert trainable == 60_000


def test_modern_form_takes_other_sizes() -> None:
    model = tk.create_model("lenet5", num_classes=3, input_shape=(48, 48, 3))
    assert model.get_layer("stage3_c5").output.shape[1:] == (5, 5, 120)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("lenet5_faithful", {"input_shape": (224, 224, 3)}),
        ("lenet5", {"faithful": True, "input_shape": (224, 224, 3)}),
        ("lenet5", {"faithful": True, "input_shape": (32, 32, 3)}),
        ("lenet5", {"input_shape": (31, 31, 1)}),
        ("lenet5", {"input_shape": (28, 28, 1)}),
    ],
)
def test_invalid_inputs_raise(name: str, kwargs: dict) -> None:
    with pytest.raises(tk.ConfigError):
        tk.create_model(name, **kwargs)
