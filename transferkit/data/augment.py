"""One fused geometric augmentation: flip, rotation, zoom and translation as one resample.

Keras' RandomFlip, RandomRotation, RandomZoom and RandomTranslation each resample the whole batch;
chained they cost three or four bilinear passes on the CPU that also runs the training step.
:class:`RandomAffine` draws the same per-image parameters, composes them into one 3x3 matrix per
image (a flip is a matrix too, so it is free) and resamples once with
``keras.ops.image.affine_transform``. Sampling the original once also blurs less than resampling
a resample, and the fill is reflected from the original rather than from an earlier output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from transferkit.errors import ConfigError

Factor = float | Sequence[float] | None
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
FILL_MODES = ("reflect", "wrap", "constant", "nearest")
STEPS = ("flip", "rotation", "zoom", "translation")


def _factor_range(factor: Factor, name: str, zoom: bool = False) -> tuple[float, float]:
    """Keras' factor convention: ``f`` means ``(-|f|, |f|)``, a pair is sorted; None is ``(0, 0)``."""
    if factor is None:
        return (0.0, 0.0)
    pair = sorted(float(f) for f in factor) if isinstance(factor, (tuple, list)) else [-abs(factor), abs(factor)]
    # A zoom of -1 scales by 0; RandomZoom refuses it too.
    if len(pair) != 2 or pair[0] < -1.0 or pair[1] > 1.0 or (zoom and pair[0] == -1.0):
        bounds = "(-1, 1]" if zoom else "[-1, 1]"
        raise ConfigError(f"{name} takes a number or a pair of numbers in {bounds}, got {factor!r}")
    return (pair[0], pair[1])


def _matrix(a0: Any, a1: Any, a2: Any, b0: Any, b1: Any, b2: Any) -> Any:
    """Per-image 3x3 matrices from the rows' entries, each of shape (batch,)."""
    zeros = ops.zeros_like(a0)
    return ops.reshape(ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros, zeros + 1.0], axis=-1), (-1, 3, 3))


def _centered(a0: Any, a1: Any, b0: Any, b1: Any, cx: Any, cy: Any) -> Any:
    """The linear map ``[[a0, a1], [b0, b1]]`` about the image centre (cx, cy), in pixels."""
    return _matrix(a0, a1, cx - a0 * cx - a1 * cy, b0, b1, cy - b0 * cx - b1 * cy)


@keras.saving.register_keras_serializable(package="transferkit")
class RandomAffine(keras.layers.Layer):
    """Random flip, rotation, zoom and translation, fused into one resample per batch.

    Each argument means what it means for the Keras layer it replaces, drawn per image:

    Args:
        flip: RandomFlip's ``mode`` (``"horizontal"``, ``"vertical"``,
            ``"horizontal_and_vertical"``) or None; each named axis flips with p = 0.5
            (independently for the two axes, where RandomFlip flips both or neither).
        rotation: RandomRotation's ``factor``, a fraction of a full turn: ``f`` draws from
            ``[-f, f]``, ``(a, b)`` from ``[a, b]``; positive is counter-clockwise.
        zoom: RandomZoom's ``height_factor``: the scale is ``1 + u``, positive zooms out.
        zoom_width: RandomZoom's ``width_factor``; None zooms both axes by the same draw.
        translation: RandomTranslation's ``height_factor``, a fraction of the height.
        translation_width: RandomTranslation's ``width_factor``; None takes ``translation``'s
            range (drawn independently).
        order: the order the steps apply in, as they would as a chain of layers.
        fill_mode: ``"reflect"``, ``"wrap"``, ``"constant"`` or ``"nearest"``.
        interpolation: ``"bilinear"`` or ``"nearest"``.
        fill_value: the value for ``fill_mode="constant"``.
        seed: seeds the layer's ``keras.random.SeedGenerator``.

    Identity when called with ``training=False`` (as inside ``model.predict``). Images are
    channels-last, batched or not, of any dtype; the output has the layer's compute dtype.
    """

    def __init__(
        self,
        flip: str | None = None,
        rotation: Factor = None,
        zoom: Factor = None,
        zoom_width: Factor = None,
        translation: Factor = None,
        translation_width: Factor = None,
        order: Sequence[str] = STEPS,
        fill_mode: str = "reflect",
        interpolation: str = "bilinear",
        fill_value: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if flip is not None and flip not in FLIP_MODES:
            raise ConfigError(f"flip takes one of {', '.join(FLIP_MODES)} or None, got {flip!r}")
        if fill_mode not in FILL_MODES or interpolation not in ("bilinear", "nearest"):
            raise ConfigError(
                f"fill_mode takes one of {', '.join(FILL_MODES)} and interpolation 'bilinear' or 'nearest', "
                f"got {fill_mode!r} and {interpolation!r}"
            )
        if len(set(order)) != len(order) or not set(order) <= set(STEPS):
            raise ConfigError(f"order takes each of {', '.join(STEPS)} at most once, got {list(order)}")
        self.flip, self.rotation, self.order = flip, rotation, tuple(order)
        self.zoom, self.zoom_width = zoom, zoom_width
        self.translation, self.translation_width = translation, translation_width
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, fill_value
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        # Per step, the ranges of its uniform draws (one column each); (0, 0) is the identity.
        zoom_range = _factor_range(zoom, "zoom", zoom=True)
        ranges = {
            "flip": [(0.0, 1.0) if flip in (axis, FLIP_MODES[2]) else (0.0, 0.0) for axis in FLIP_MODES[:2]],
            "rotation": [_factor_range(rotation, "rotation")],
            "zoom": [zoom_range] if zoom_width is None else [zoom_range, _factor_range(zoom_width, "zoom_width", zoom=True)],
            "translation": [
                _factor_range(translation, "translation"),
                _factor_range(translation if translation_width is None else translation_width, "translation_width"),
            ],
        }
        self._steps = [(name, ranges[name]) for name in self.order if any(r != (0.0, 0.0) for r in ranges[name])]

    @staticmethod
    def _step(name: str, u: list[Any], height: Any, width: Any) -> Any:
        """One step's per-image matrix (output pixel -> input pixel), as the Keras layer builds it."""
        zero, one = ops.zeros_like(u[0]), ops.ones_like(u[0])
        cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        if name == "flip":
            sx, sy = (ops.where(v >= 0.5, -one, one) for v in u)
            return _centered(sx, zero, zero, sy, cx, cy)
        if name == "rotation":
            cos, sin = ops.cos(u[0] * (2.0 * math.pi)), ops.sin(u[0] * (2.0 * math.pi))
            return _centered(cos, -sin, sin, cos, cx, cy)
        if name == "zoom":  # u[-1]: the width's own draw, or the height's when shared
            return _centered(1.0 + u[-1], zero, zero, 1.0 + u[0], cx, cy)
        return _matrix(one, zero, -u[1] * width, zero, one, -u[0] * height)

    def call(self, inputs: Any, training: bool = True) -> Any:
        images = ops.cast(inputs, self.compute_dtype)
        if not training or not self._steps:
            return images
        batched = len(images.shape) == 4
        images = images if batched else images[None]
        shape = ops.shape(images)
        height, width = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")
        columns = [r for _, ranges in self._steps for r in ranges]
        low = ops.convert_to_tensor([r[0] for r in columns], "float32")
        high = ops.convert_to_tensor([r[1] for r in columns], "float32")
        u = low + (high - low) * keras.random.uniform((shape[0], len(columns)), seed=self.generator)
        matrix, i = None, 0
        for name, ranges in self._steps:
            step = self._step(name, [u[:, i + k] for k in range(len(ranges))], height, width)
            matrix = step if matrix is None else ops.matmul(matrix, step)
            i += len(ranges)
        out = ops.image.affine_transform(
            images,
            ops.reshape(matrix, (-1, 9))[:, :8],
            interpolation=self.interpolation,
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
            data_format="channels_last",
        )
        return out if batched else out[0]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        names = ("flip", "rotation", "zoom", "zoom_width", "translation", "translation_width", "order")
        names += ("fill_mode", "interpolation", "fill_value", "seed")
        # Tuples as lists, as they come back from a .keras file.
        own = {name: getattr(self, name) for name in names}
        return {**super().get_config(), **{k: list(v) if isinstance(v, tuple) else v for k, v in own.items()}}
