"""VGG, configurations A to E.

Simonyan and Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, arXiv:1409.1556, Tables 1 and 2.

Five stages of stride-1 "same" convolutions with ReLU, each closed by 2x2/2 max pooling; the
configurations differ only in the convolutions per stage (:data:`CONFIGS`). ``vgg_d`` and
``vgg_e`` are layer for layer ``keras.applications.VGG16`` / ``VGG19`` (their ImageNet no-top
files load). ``batch_norm=True`` gives the conv-BN-ReLU form (no conv bias; not in the paper).
The FC 4096-4096 layers with dropout 0.5 are the shared head's defaults.
"""

from __future__ import annotations

from typing import Any

import keras

from transferkit.errors import ConfigError
from transferkit.models.layers import LocalResponseNormalization
from transferkit.models.common import check_min_size, conv_bn_act
from transferkit.models.registry import ModelInfo, register_model
from transferkit.models.weights import PretrainedWeights, register_weights

PAPER = (
    "Simonyan & Zisserman 2014, Very Deep Convolutional Networks for Large-Scale Image "
    "Recognition, arXiv:1409.1556"
)
FILTERS = (64, 128, 256, 512, 512)  # per stage, Table 1

# Table 1: configuration -> (kernel size of each conv per stage, LRN after the first conv,
# Table 2's parameter count in millions, aliases).
CONFIGS: dict[str, tuple[tuple[tuple[int, ...], ...], bool, int, tuple[str, ...]]] = {
    "a": (((3,), (3,), (3, 3), (3, 3), (3, 3)), False, 133, ("vgg11",)),
    "a_lrn": (((3,), (3,), (3, 3), (3, 3), (3, 3)), True, 133, ()),
    "b": (((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)), False, 133, ("vgg13",)),
    "c": (((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)), False, 134, ()),
    "d": (((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)), False, 138, ("vgg16",)),
    "e": (((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)), False, 144, ("vgg19",)),
}
# The A-LRN layer uses AlexNet's constants (section 2.2).
LRN = {"size": 5, "k": 2.0, "alpha": 1e-4, "beta": 0.75}

_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
# Keras' no-top files: configuration -> (file name, md5 as keras.applications checks it).
WEIGHTS = {
    "d": (
        "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
    ),
    "e": (
        "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "253f8cb515780f3b799900260a226db6",
    ),
}


def vgg_conv(x: Any, filters: int, kernel: int, batch_norm: bool, name: str) -> Any:
    """A "same" convolution + ReLU (``{name}``), or conv-BN-ReLU when ``batch_norm``."""
    if batch_norm:
        return conv_bn_act(x, filters, kernel, name=name)
    return keras.layers.Conv2D(filters, kernel, padding="same", activation="relu", name=name)(x)


def vgg(x: Any, config: str = "d", batch_norm: bool = False) -> Any:
    """VGG backbone (headless).

    Args:
        x: Preprocessed image tensor (caffe mode: BGR, ImageNet mean subtracted).
        config: A Table 1 column: ``"a"``, ``"a_lrn"``, ``"b"``, ``"c"``, ``"d"`` or ``"e"``.
        batch_norm: Batch normalisation between each conv and its ReLU.

    Returns:
        The stage5 feature map (stride 32; 7x7x512 on a 224x224 input).

    Raises:
        ConfigError: an unknown config, or inputs smaller than 32x32.
    """
    if config not in CONFIGS:
        raise ConfigError(f"unknown VGG config {config!r}; choose one of {', '.join(CONFIGS)}")
    check_min_size(x, 32, "VGG")
    stages, lrn, _, _ = CONFIGS[config]
    for s, (filters, kernels) in enumerate(zip(FILTERS, stages), start=1):
        for c, kernel in enumerate(kernels, start=1):
            x = vgg_conv(x, filters, kernel, batch_norm, name=f"stage{s}_conv{c}")
            if lrn and s == c == 1:
                x = LocalResponseNormalization(**LRN, name="stage1_lrn")(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"stage{s}_pool")(x)
    return x


for _config, (_, _, _millions, _aliases) in CONFIGS.items():
    _name = f"vgg_{_config}"
    register_model(
        ModelInfo(
            name=_name,
            family="vgg",
            builder=vgg,
            kwargs={"config": _config, "batch_norm": False},
            input_shape=(224, 224, 3),
            min_size=32,
            preprocessing="caffe",  # the paper subtracts the mean RGB; Keras' files use caffe
            head={"pooling": "flatten", "hidden_units": (4096, 4096), "dropout": 0.5},
            stages=tuple(f"stage{s}" for s in range(1, 6)),
            paper_params=_millions * 1_000_000,
            paper=PAPER,
        ),
        aliases=_aliases,
    )
    if _config in WEIGHTS:
        _path, _md5 = WEIGHTS[_config]
        register_weights(
            PretrainedWeights(
                model=_name,
                tag="imagenet",
                file_name=_path.split("/")[-1],
                url=_WEIGHTS_URL + _path,
                file_hash=_md5,
                input_size=224,
                preprocessing="caffe",
                num_classes=None,
                licence="CC-BY-4.0",  # Oxford VGG release, ported by Keras
                paper=PAPER,
            )
        )
