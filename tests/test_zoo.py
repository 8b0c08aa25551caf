"""Checks parametrized over the registry itself: every registered name is built and run.

The package pins the parameter count of every registered name in ``transferkit/models/params.json``
(counts of ``create_model(name)``: the default input shape and the paper's number of classes;
``transferkit models`` prints them without building anything), and this module builds every name
to check its pin.
The smallest member of each family (``FAMILIES``) also goes through the training-side checks:
gradients reach every weight, config and ``.keras`` round trips, freezing by stage.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import transferkit as tk
from transferkit.models.registry import parameter_counts
from transferkit.transfer import base_layers, frozen_prefix, stage_names
from zoo_helpers import (
    assert_gradients_reach_every_weight,
    assert_same,
    calibrate_batchnorm,
    images,
)

SMALL = (32, 32, 3)
# The smallest member of each family, with the small input and head it is built with below.
FAMILIES: dict[str, dict] = {
    "lenet5": {},
    "lenet5_faithful": {},
    "alexnet": dict(input_shape=(67, 67, 3), hidden_units=(32, 32)),  # 4096-wide FC is the head's
    "vgg_a_lrn": dict(input_shape=SMALL, hidden_units=(16, 16)),
    "googlenet": dict(input_shape=SMALL),
    "resnet20": {},
    "wrn_40_1": dict(input_shape=SMALL, block_dropout=0.2),
    "densenet_bc100_k12": dict(input_shape=SMALL),
    "efficientnet_b0": dict(input_shape=SMALL),
    "mobilenet_v1_025": dict(input_shape=SMALL),
}
# Round trips. Untrained, these nets' outputs barely depend on the input until their BN statistics
# are set from data as a trained net's are; they compare calibrated outputs at atol 1e-6.
CALIBRATE_BN = {"resnet20", "efficientnet_b0"}
# State a default build leaves trivial, set so that the round trip must carry it.
ROUND_TRIP_WEIGHTS = {
    "efficientnet_b0": {"stem_normalization": [np.full(3, 0.5), np.full(3, 0.3), np.array(7)]},
}
# Otherwise rtol 1e-5 and atol 1e-6 of the largest output; LeNet's, fixed:
ROUND_TRIP_ATOL = {"lenet5": 1e-5, "lenet5_faithful": 1e-5}
# Freezing: the stage named (else stage3), and (trainable, frozen) layers pinned by name so that
# the rule "layers of a later stage train" is not vacuous for them.
FREEZE_FROM = {"googlenet": "stage4"}
FREEZE_SIDES = {
    "wrn_40_1": (["stage3_block1_conv1"], ["stage2_block6_conv2"]),
    "densenet_bc100_k12": (["stage3_transition_conv"], ["stage2_block16_conv2"]),  # into stage3
}

NAMES = tk.list_models()
LARGE = 30_000_000  # classifiers above this many parameters are in the slow set
VERY_DEEP = {"resnet1202"}  # few parameters but thousands of layers: about a minute per build


PINNED = parameter_counts()


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


@pytest.mark.parametrize("name", _params([n for n in NAMES if n not in VERY_DEEP]))  # those: next test
def test_parameter_count_is_pinned(name: str) -> None:
    assert name in PINNED, f"pin the parameter count of {name} in transferkit/models/params.json"
    assert tk.create_model(name).count_params() == PINNED[name]


@pytest.mark.parametrize("name", _params(NAMES))
def test_small_forward_pass(name: str) -> None:
    info = tk.get_model_info(name)
    shape = _small_shape(info)
    if name in VERY_DEEP:
        # One build (about a minute) checks the pin and runs: the default build is small already.
        model = tk.create_model(name)
        assert model.count_params() == PINNED[name] and tuple(model.input_shape[1:]) == shape
    else:
        model = tk.create_model(name, num_classes=3, input_shape=shape)
    classes = model.output_shape[-1]
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    # Untrained, a BatchNormalization layer in inference mode is the identity, so the 600
    # unnormalised residual additions of a very deep net overflow float32; from-scratch training
    # runs it with batch statistics, and so does this check.
    y = np.asarray(model(x, training=name in VERY_DEEP))
    assert y.shape == (2, classes) and (classes == 3 or name in VERY_DEEP)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    if name not in VERY_DEEP:  # its backbone is the classifier's layers up to the pooling (same builder as resnet110's)
        backbone = tk.create_backbone(name, input_shape=shape)
        assert len(backbone.output.shape) == 4


def test_every_pin_names_a_registered_model() -> None:
    stale = sorted(set(PINNED) - set(NAMES))
    assert not stale, f"pinned counts for unregistered names: {stale}"


def test_unknown_name_lists_closest() -> None:
    with pytest.raises(tk.ConfigError, match="closest: mobilenet"):
        tk.create_model("mobilenet_v1_26")


def test_every_family_has_a_representative() -> None:
    families = {tk.get_model_info(n).family for n in NAMES}
    assert families == {tk.get_model_info(n).family for n in FAMILIES}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_gradients_reach_every_weight(name: str) -> None:
    model = tk.create_model(name, num_classes=3, **FAMILIES[name])
    assert_gradients_reach_every_weight(model, images(model.input_shape[1:]))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_config_and_keras_round_trip(name: str, tmp_path: Path) -> None:
    model = tk.create_model(name, num_classes=4, activation=None, **FAMILIES[name])
    x = images(model.input_shape[1:], 4)
    if name in CALIBRATE_BN:
        calibrate_batchnorm(model, x)
    for layer, weights in ROUND_TRIP_WEIGHTS.get(name, {}).items():
        model.get_layer(layer).set_weights(weights)
    expected = np.asarray(model(x, training=False))

    def check(other: keras.Model) -> None:
        actual = np.asarray(other(x, training=False))
        if name in CALIBRATE_BN:
            assert_same(actual, expected, atol=1e-6)
        else:
            assert expected.std(axis=0).mean() > 0  # the outputs depend on the input
            atol = ROUND_TRIP_ATOL.get(name, 1e-6 * np.abs(expected).max())
            np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=atol)
        # Same layers, same settings (custom layers, in-block dropout rates, ...).
        for ours, theirs in zip(model.layers, other.layers, strict=True):
            assert type(theirs) is type(ours), ours.name
            assert theirs.get_config() == ours.get_config(), ours.name

    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    check(clone)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    check(keras.saving.load_model(path))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_freeze_by_stage(name: str) -> None:
    model = tk.create_model(name, num_classes=3, **FAMILIES[name])
    fixed = {w.path for w in model.non_trainable_weights}  # BN statistics, LeNet's RBF centres
    start = FREEZE_FROM.get(name, "stage3")
    tk.freeze(model, start)
    stages = list(tk.get_model_info(name).stages)
    assert stage_names(model) == stages
    on = tuple(f"{stage}_" for stage in stages[stages.index(start) :])
    layers = base_layers(model)
    assert layers
    for layer in layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == (layer.name.startswith(on) and not is_bn), layer.name
    head = [l for l in model.layers if tk.models.head.is_head_layer(l)]
    assert model.get_layer("predictions") in head and all(l.trainable for l in head)
    assert not fixed & {w.path for w in model.trainable_weights}
    trainable, frozen = FREEZE_SIDES.get(name, ([], []))
    assert all(model.get_layer(n).trainable for n in trainable)
    assert not any(model.get_layer(n).trainable for n in frozen)


# Families with randomness in the base (WRN's in-block dropout, EfficientNet's stochastic depth):
# the frozen-prefix cache stops at the first such layer, which differs every training step.
PREFIX_STOPS_AT = {"wrn_40_1": "stage1_block1_conv1_dropout", "efficientnet_b0": "stage2_block2_drop"}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_frozen_prefix_splits_exactly(name: str) -> None:
    model = tk.create_model(name, num_classes=3, **FAMILIES[name])
    x = images(model.input_shape[1:], 4)
    if name in CALIBRATE_BN:
        calibrate_batchnorm(model, x)
    start = FREEZE_FROM.get(name, "stage3")
    tk.freeze(model, start)
    prefix, suffix = frozen_prefix(model)
    assert not prefix.trainable_weights
    assert {w.path for w in suffix.trainable_weights} == {w.path for w in model.trainable_weights}
    np.testing.assert_allclose(
        np.asarray(suffix(prefix(x), training=False)), np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6
    )
    cached = {layer.name for layer in prefix.layers}
    stop = PREFIX_STOPS_AT.get(name)
    layers = base_layers(model)
    if stop:
        before = layers[: [l.name for l in layers].index(stop)]
        assert stop not in cached
    else:
        stages = list(tk.get_model_info(name).stages)
        before = [l for l in layers if not l.name.startswith(tuple(f"{s}_" for s in stages[stages.index(start) :]))]
    assert before and not {l.name for l in before} - cached, sorted({l.name for l in before} - cached)[:5]
    assert not any(l.trainable_weights for l in prefix.layers)
    tk.freeze(model)  # the whole base frozen: the head trains on the pooled features
    prefix, suffix = frozen_prefix(model)
    assert "predictions" in {l.name for l in suffix.layers}
    assert stop or all(tk.models.head.is_head_layer(l) for l in suffix.layers if l.weights)
    tk.freeze(model, "all")  # everything trains: nothing to cache
    assert frozen_prefix(model) is None

