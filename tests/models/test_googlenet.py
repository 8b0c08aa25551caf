"""GoogLeNet / Inception v1: Table 1 parameter counts, auxiliary classifiers.

Gradients, config and .keras round trips and freezing by stage: tests/test_zoo.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import keras
import transferkit as tk
from transferkit.models import googlenet as g
from transferkit.transfer import base_layers
from zoo_helpers import images

AUX_SMALL = (80, 80, 3)  # the auxiliary 5x5 pools need a 5x5 inception 4a map


def _weights_only(layer: keras.layers.Layer) -> int:
    """Parameters without biases: what Table 1's "params" column counts (K = 1024)."""
    return int(np.prod(layer.kernel.shape))


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return tk.create_model("googlenet")


# Table 1 modules whose printed "params" disagree with their own filter counts (paper errata):
# conv 7x7 is 7*7*3*64 = 9.2K, not 2.7K; 4c is 497.5K, not 463K; 5a is 1018K, not 1072K.
PAPER_ERRATA = {"stem_conv1": 9.19, "stage4_block3": 497.5, "stage5_block1": 1018.0}


def _paper_rows() -> list[tuple[str, float]]:
    rows = [("stem_conv1", g.STEM_CONVS["stem_conv1"][3]), ("stem_conv3", g.STEM_CONVS["stem_conv3"][3])]
    for stage, modules in g.STAGES:
        rows += [(f"{stage}_block{b}", spec.paper_kparams) for b, spec in enumerate(modules, start=1)]
    return rows + [("predictions", g.PAPER_CLASSIFIER_KPARAMS)]


@pytest.mark.parametrize(("prefix", "paper_k"), _paper_rows())
def test_table1_params_per_layer(model: keras.Model, prefix: str, paper_k: float) -> None:
    if prefix == "stem_conv3":  # Table 1's conv 3x3 row includes its 1x1 reduce (stem_conv2)
        layers = [model.get_layer("stem_conv2"), model.get_layer("stem_conv3")]
    elif prefix.startswith("stage"):
        layers = [l for l in model.layers if l.name.startswith(prefix + "_") and l.weights]
    else:
        layers = [model.get_layer(prefix)]
    ours_k = sum(_weights_only(l) for l in layers) / 1024
    expected = PAPER_ERRATA.get(prefix, paper_k)
    assert ours_k == pytest.approx(expected, rel=0.02), (prefix, ours_k, paper_k)


def test_total_params_against_paper(model: keras.Model) -> None:
    total = model.count_params()
    no_bias = sum(_weights_only(l) for l in model.layers if l.weights)
    paper_k = sum(k for _, k in _paper_rows())  # the column's sum, ~6.8M in K = 1024
    assert no_bias / 1024 == pytest.approx(paper_k, rel=0.02)
    assert paper_k * 1024 == pytest.approx(g.PAPER_TOTAL_PARAMS, rel=0.03)
    # With biases (7.8K of them) in plain units the count is 2.9% above the rounded 6.8M.
    assert total == 6_998_552
    assert total == pytest.approx(g.PAPER_TOTAL_PARAMS, rel=0.03)


def test_layer_names_and_stages(model: keras.Model) -> None:
    for name in (
        "stem_conv1", "stem_pool1", "stem_lrn1", "stem_conv2", "stem_conv3", "stem_lrn2",
        "stage3_pool", "stage3_block1_1x1", "stage3_block1_3x3_reduce", "stage3_block1_3x3",
        "stage3_block1_5x5_reduce", "stage3_block1_5x5", "stage3_block1_pool",
        "stage3_block1_pool_proj", "stage3_block2_concat", "stage4_pool", "stage4_block1_concat",
        "stage4_block5_concat", "stage5_pool", "stage5_block2_concat", "head_pool", "head_dropout",
    ):
        model.get_layer(name)
    assert tk.transfer.stage_names(model) == ["stem", "stage3", "stage4", "stage5"]
    assert model.get_layer("head_dropout").rate == 0.4
    assert isinstance(model.get_layer("stem_lrn1"), tk.models.layers.LocalResponseNormalization)
    assert model.get_layer("stage5_block2_concat").output.shape[1:] == (7, 7, 1024)
    assert tk.get_model_info("inception_v1").name == "googlenet"


def test_aux_outputs_train_and_strip() -> None:
    model = tk.create_model("googlenet", num_classes=5, input_shape=AUX_SMALL, aux_outputs=True)
    assert [o.shape for o in model.outputs] == [(None, 5)] * 3
    for prefix in ("aux1", "aux2"):
        for op in ("pool", "conv", "fc", "dropout", "predictions"):
            layer = model.get_layer(f"{prefix}_{op}")
            assert tk.models.head.is_head_layer(layer)
    assert model.get_layer("aux1_dropout").rate == 0.7
    assert model.get_layer("aux1_pool").pool_size == (5, 5)
    assert g.loss_weights() == [1.0, 0.3, 0.3]
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=["sparse_categorical_crossentropy"] * 3,
        loss_weights=g.loss_weights(),
    )
    x, y = images(AUX_SMALL, 4), np.array([0, 1, 2, 3])
    before = model.get_layer("aux2_fc").get_weights()[0].copy()
    logs = model.train_on_batch(x, [y, y, y], return_dict=True)
    assert np.isfinite(logs["loss"])
    assert not np.allclose(before, model.get_layer("aux2_fc").get_weights()[0])

    stripped = g.strip_aux(model)
    assert len(stripped.outputs) == 1
    assert not any(l.name.startswith("aux") for l in stripped.layers)
    assert stripped.get_layer("stage3_block1_1x1") is model.get_layer("stage3_block1_1x1")
    np.testing.assert_allclose(
        np.asarray(stripped(x, training=False)), np.asarray(model(x, training=False)[0]), atol=1e-6
    )
    assert stripped.count_params() == tk.create_model(
        "googlenet", num_classes=5, input_shape=AUX_SMALL
    ).count_params()


def test_freeze_keeps_aux_trainable() -> None:
    model = tk.freeze(
        tk.create_model("googlenet", num_classes=2, input_shape=AUX_SMALL, aux_outputs=True)
    )
    assert all(not l.trainable for l in base_layers(model))
    assert model.get_layer("aux1_fc").trainable and model.get_layer("aux2_predictions").trainable


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (31, 31, 3)},
        {"input_shape": (64, 64, 3), "aux_outputs": True},  # 4x4 inception 4a map < 5x5 pool
    ],
)
def test_invalid_combinations_raise(kwargs: dict) -> None:
    with pytest.raises(tk.ConfigError):
        tk.create_model("googlenet", **kwargs)


def test_smallest_aux_input_builds() -> None:
    model = tk.create_model("googlenet", num_classes=2, input_shape=(65, 65, 3), aux_outputs=True)
    assert len(model.outputs) == 3


def test_init_is_bvlc_and_keeps_the_signal() -> None:
    """Every conv and auxiliary FC starts as BVLC GoogLeNet's: weights uniform in
    +-sqrt(3 / fan_in), biases 0.2 (the classifiers' biases zero); and the signal that reaches
    inception 5b is not a vanishing fraction of the stem's (Keras' Glorot + zero biases lose
    about 90% of it on the way)."""
    keras.utils.set_random_seed(0)
    model = tk.create_model("googlenet", num_classes=10, weights=None, input_shape=AUX_SMALL, aux_outputs=True)
    inits = [l for l in model.layers if isinstance(l, keras.layers.Conv2D) or l.name.endswith("_fc")]
    assert len(inits) == 57 + 2 * 2  # 3 stem + 9 modules x 6 convs, and per auxiliary a conv and an FC
    for layer in inits:
        kernel, bias = layer.get_weights()
        fan_in = int(np.prod(kernel.shape[:-1]))
        limit = np.sqrt(3 / fan_in)
        assert np.abs(kernel).max() <= limit * (1 + 1e-6), layer.name
        assert abs(kernel.std() - limit / np.sqrt(3)) < 0.1 * limit, layer.name  # uniform: std = limit / sqrt(3)
        np.testing.assert_array_equal(bias, np.full_like(bias, 0.2), err_msg=layer.name)
    for name in ("predictions", "aux1_predictions", "aux2_predictions"):
        assert not model.get_layer(name).get_weights()[1].any(), name
    probe = keras.Model(model.input, [model.get_layer("stem_conv3").output, model.get_layer("stage5_block2_concat").output])
    stem, top = probe(images(AUX_SMALL, n=8))
    assert float(np.std(top)) > 0.5 * float(np.std(stem))
