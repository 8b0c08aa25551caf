"""Custom layers shared by several families. Each is registered so `.keras` files round trip."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from transferkit.errors import ConfigError

# Constants of the preprocessing conventions that published weights were trained with.
_IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

PREPROCESSING_MODES = ("tf", "torch", "caffe", "unit", "none")


@keras.saving.register_keras_serializable(package="transferkit")
class Preprocess(keras.layers.Layer):
    """Maps raw 0-255 RGB pixels to what the weights expect, inside the model.

    Modes: ``tf`` scales to [-1, 1] (MobileNet, ResNet v2, Inception); ``torch`` scales to
    [0, 1] and standardises with the ImageNet mean and std (DenseNet); ``caffe`` flips RGB to BGR
    and subtracts the ImageNet BGR mean (ResNet v1, VGG); ``unit`` scales to [0, 1]; ``none``
    passes pixels through (EfficientNet normalises in its own stem).
    Constants are config, not weights, so weighted-layer order matches the published files.
    """

    def __init__(self, mode: str = "tf", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ConfigError(
                f"unknown preprocessing mode {mode!r}; choose one of {', '.join(PREPROCESSING_MODES)}"
            )
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_IMAGENET_MEAN_RGB, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(_IMAGENET_STD_RGB, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
            return ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="transferkit")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (Krizhevsky et al. 2012, section 3.3).

    ``b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2) ** beta``, with the paper's alpha (not
    divided by ``n`` as Caffe does). Used by AlexNet, VGG-A-LRN and GoogLeNet. No weights.

    Args:
        size: ``n``, the number of adjacent channels summed over (odd).
        k: Additive constant.
        alpha: Scale of the sum of squares.
        beta: Exponent.
    """

    def __init__(
        self, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if size < 1 or size % 2 == 0:
            raise ConfigError(f"LRN size must be a positive odd number, got {size}")
        self.size, self.k, self.alpha, self.beta = size, k, alpha, beta

    def call(self, inputs: Any) -> Any:
        import tensorflow as tf

        return tf.nn.local_response_normalization(
            inputs, depth_radius=self.size // 2, bias=self.k, alpha=self.alpha, beta=self.beta
        )

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "size": self.size,
            "k": self.k,
            "alpha": self.alpha,
            "beta": self.beta,
        }
