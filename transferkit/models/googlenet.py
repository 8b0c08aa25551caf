"""GoogLeNet (Inception v1).

Szegedy et al. 2015, "Going deeper with convolutions", CVPR 2015, arXiv:1409.4842. The network
of the paper's Table 1 and Figure 3: convolutions with bias and ReLU (no batch normalisation),
local response normalisation in the stem, nine inception modules, and the two auxiliary
classifiers after inception 4a and 4d that train with loss weight 0.3 and are dropped for
inference (:func:`strip_aux`). The paper gives no initialisation; every conv and the auxiliary
1024-wide FC layers start as in BVLC GoogLeNet, the replication made with the authors' help
(:data:`INIT`): without batch normalisation, Keras' default (Glorot weights, zero biases) shrinks
the signal about tenfold from the stem to inception 5b, and the net sits at chance for hundreds
of steps.

Layer names: stem ``stem_*``; inception 3a/3b are ``stage3_block1``/``stage3_block2``, 4a-4e
``stage4_block1``..``block5``, 5a/5b ``stage5_block1``/``block2``; each stage starts with its
stride-2 max pool (``stage3_pool``, ``stage4_pool``, ``stage5_pool``). Auxiliary layers start
with ``aux`` so they count as head layers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras

from transferkit.errors import ConfigError
from transferkit.models.layers import LocalResponseNormalization
from transferkit.models.registry import ModelInfo, register_model


class Inception(NamedTuple):
    """One row of Table 1: filters of each branch and the paper's "params" figure (in K)."""

    n1x1: int
    n3x3_reduce: int
    n3x3: int
    n5x5_reduce: int
    n5x5: int
    pool_proj: int
    paper_kparams: int


# Table 1: stage -> inception modules (3a, 3b | 4a..4e | 5a, 5b).
STAGES = (
    (
        "stage3",
        (Inception(64, 96, 128, 16, 32, 32, 159), Inception(128, 128, 192, 32, 96, 64, 380)),
    ),
    (
        "stage4",
        (
            Inception(192, 96, 208, 16, 48, 64, 364),
            Inception(160, 112, 224, 24, 64, 64, 437),
            Inception(128, 128, 256, 24, 64, 64, 463),
            Inception(112, 144, 288, 32, 64, 64, 580),
            Inception(256, 160, 320, 32, 128, 128, 840),
        ),
    ),
    (
        "stage5",
        (Inception(256, 160, 320, 32, 128, 128, 1072), Inception(384, 192, 384, 48, 128, 128, 1388)),
    ),
)
# Stem of Table 1: conv name -> (filters, kernel, stride, the paper's "params" in K). conv2 is
# the "#3x3 reduce" of the conv 3x3 row, whose 112K covers both.
STEM_CONVS = {
    "stem_conv1": (64, 7, 2, 2.7),
    "stem_conv2": (64, 1, 1, None),
    "stem_conv3": (192, 3, 1, 112),
}
PAPER_CLASSIFIER_KPARAMS = 1000  # Table 1 "linear" row
PAPER_TOTAL_PARAMS = 6_800_000  # Table 1 total (~6.8M, no auxiliary classifiers)

# The paper gives no LRN constants; these are BVLC GoogLeNet's (Caffe: size 5, alpha 1e-4
# divided by the size, k 1, beta 0.75).
LRN = {"size": 5, "k": 1.0, "alpha": 1e-4 / 5, "beta": 0.75}

# Auxiliary classifiers (section 5): (name prefix, inception module it reads, loss weight).
AUX_CLASSIFIERS = (("aux1", "stage4_block1_concat", 0.3), ("aux2", "stage4_block4_concat", 0.3))
AUX_POOL, AUX_POOL_STRIDE, AUX_CONV, AUX_FC, AUX_DROPOUT = 5, 3, 128, 1024, 0.7

# BVLC GoogLeNet's initialisation (Caffe models/bvlc_googlenet/train_val.prototxt): "xavier"
# weights, which in Caffe are uniform in +-sqrt(3 / fan_in) (Keras' lecun_uniform), and biases
# of 0.2, for every conv and the auxiliary FC layers (the classifiers keep zero biases).
INIT_BIAS = 0.2
INIT = {"kernel_initializer": "lecun_uniform", "bias_initializer": keras.initializers.Constant(INIT_BIAS)}

PAPER = "Szegedy et al. 2015, Going deeper with convolutions, CVPR 2015, arXiv:1409.4842"


def _conv(x: Any, filters: int, kernel: int, name: str, strides: int = 1) -> Any:
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", activation="relu", name=name, **INIT
    )(x)


def inception_block(x: Any, spec: Inception, name: str) -> Any:
    """Inception module with dimension reductions (Figure 2b).

    Four branches concatenated on channels: 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5;
    3x3/1 max pool -> 1x1 projection. Every conv has a bias and a ReLU.

    Args:
        x: Input feature map.
        spec: Filters of the branches (one row of Table 1).
        name: Layer name prefix, e.g. ``stage4_block1`` (inception 4a).

    Returns:
        The concatenation, named ``{name}_concat``.
    """
    b1 = _conv(x, spec.n1x1, 1, f"{name}_1x1")
    b3 = _conv(x, spec.n3x3_reduce, 1, f"{name}_3x3_reduce")
    b3 = _conv(b3, spec.n3x3, 3, f"{name}_3x3")
    b5 = _conv(x, spec.n5x5_reduce, 1, f"{name}_5x5_reduce")
    b5 = _conv(b5, spec.n5x5, 5, f"{name}_5x5")
    bp = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = _conv(bp, spec.pool_proj, 1, f"{name}_pool_proj")
    return keras.layers.Concatenate(name=f"{name}_concat")([b1, b3, b5, bp])


def googlenet(x: Any) -> Any:
    """GoogLeNet backbone (headless): stem, inception 3a-5b.

    Args:
        x: Preprocessed image tensor.

    Returns:
        The inception 5b feature map (stride 32, 1024 channels).
    """
    def stem_conv(x: Any, name: str) -> Any:
        filters, kernel, stride, _ = STEM_CONVS[name]
        return _conv(x, filters, kernel, name, strides=stride)

    x = stem_conv(x, "stem_conv1")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool1")(x)
    x = LocalResponseNormalization(**LRN, name="stem_lrn1")(x)
    x = stem_conv(x, "stem_conv2")
    x = stem_conv(x, "stem_conv3")
    x = LocalResponseNormalization(**LRN, name="stem_lrn2")(x)
    for stage, modules in STAGES:
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"{stage}_pool")(x)
        for b, spec in enumerate(modules, start=1):
            x = inception_block(x, spec, f"{stage}_block{b}")
    return x


def aux_heads(backbone: keras.Model, num_classes: int) -> list[tuple[Any, float]]:
    """The two auxiliary classifiers (section 5), on inception 4a and 4d.

    ``5x5/3 average pool -> 1x1 conv 128 + ReLU -> FC 1024 + ReLU -> 70% dropout -> softmax``.

    Args:
        backbone: A GoogLeNet backbone (layers named as :func:`googlenet` names them).
        num_classes: Classes of each auxiliary classifier.

    Returns:
        ``[(output, loss_weight), ...]``, one per auxiliary classifier.

    Raises:
        ConfigError: the inception 4a map is smaller than the 5x5 pooling window.
    """
    heads = []
    for prefix, source, weight in AUX_CLASSIFIERS:
        features = backbone.get_layer(source).output
        h, w = features.shape[1], features.shape[2]
        if h is not None and w is not None and min(h, w) < AUX_POOL:
            raise ConfigError(
                f"GoogLeNet's auxiliary classifiers pool 5x5 windows of the 14x14 inception 4a "
                f"map; at this input size it is {h}x{w}. Use images of at least "
                f"{16 * (AUX_POOL - 1) + 1}x{16 * (AUX_POOL - 1) + 1} pixels or aux_outputs=False"
            )
        x = keras.layers.AveragePooling2D(AUX_POOL, strides=AUX_POOL_STRIDE, name=f"{prefix}_pool")(
            features
        )
        x = keras.layers.Conv2D(AUX_CONV, 1, activation="relu", name=f"{prefix}_conv", **INIT)(x)
        x = keras.layers.Flatten(name=f"{prefix}_flatten")(x)
        x = keras.layers.Dense(AUX_FC, activation="relu", name=f"{prefix}_fc", **INIT)(x)
        x = keras.layers.Dropout(AUX_DROPOUT, name=f"{prefix}_dropout")(x)
        out = keras.layers.Dense(
            num_classes, activation="softmax", dtype="float32", name=f"{prefix}_predictions"
        )(x)
        heads.append((out, weight))
    return heads


def loss_weights() -> list[float]:
    """Loss weights of a model built with ``aux_outputs=True``: ``[1.0, 0.3, 0.3]``.

    Use as ``model.compile(loss=..., loss_weights=loss_weights())``.
    """
    return [1.0] + [weight for _, _, weight in AUX_CLASSIFIERS]


def strip_aux(model: keras.Model) -> keras.Model:
    """The inference model: ``model`` with only its ``predictions`` output (weights shared).

    Args:
        model: A GoogLeNet classifier, with or without auxiliary outputs.

    Returns:
        A model from the same input to the ``predictions`` layer's output.
    """
    return keras.Model(model.input, model.get_layer("predictions").output, name=model.name)


register_model(
    ModelInfo(
        name="googlenet",
        family="googlenet",
        builder=googlenet,
        input_shape=(224, 224, 3),
        min_size=32,
        preprocessing="tf",
        head={"pooling": "avg", "dropout": 0.4},
        stages=("stem", "stage3", "stage4", "stage5"),
        paper_params=PAPER_TOTAL_PARAMS,
        paper=PAPER,
        aux_heads=aux_heads,
    ),
    aliases=("inception_v1",),
)
