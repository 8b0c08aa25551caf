"""LeNet-5.

LeCun, Bottou, Bengio and Haffner 1998, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), section II-B and Fig. 2.

Two forms share one spec table and one layer function:

* ``lenet5`` (default, ``faithful=False``): the common modern form - ReLU convolutions, 2x2 max
  pooling, C3 connected to all six S2 maps, F6 with ReLU and a Dense softmax output.
* ``lenet5_faithful`` (``faithful=True``): the paper's network - scaled tanh
  ``1.7159 tanh(2a/3)`` after every layer, trainable subsampling (one coefficient and one bias
  per map on the sum of each 2x2 window), the C3 connection table of Table I, and F6 (84 units)
  feeding fixed Euclidean RBF units whose centres are +1/-1 7x12 bitmaps of the digits. Its
  trainable parameters are exactly the paper's 60,000 and it takes only 32x32x1 inputs.

The backbone ends with C5 (1x1x120 on a 32x32 input); F6 and the output are the shared head.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from transferkit.errors import ConfigError
from transferkit.models.common import check_min_size
from transferkit.models.registry import ModelInfo, register_model

PAPER = (
    "LeCun et al. 1998, Gradient-based learning applied to document recognition, "
    "Proc. IEEE 86(11):2278-2324"
)
PAPER_PARAMS = 60_000  # section II-B: "60,000 trainable parameters"
INPUT_SHAPE = (32, 32, 1)
F6_UNITS = 84  # one unit per pixel of a 7x12 bitmap

# Table I: the S2 feature maps each C3 feature map takes as input.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# Fig. 2, C1 to C5: (layer name, kind, feature maps, kernel or window, faithful connection table).
LAYERS = (
    ("stage1_c1", "conv", 6, 5, None),
    ("stage1_s2", "subsampling", 6, 2, None),
    ("stage2_c3", "conv", 16, 5, C3_TABLE),
    ("stage2_s4", "subsampling", 16, 2, None),
    ("stage3_c5", "conv", 120, 5, None),
)

# The RBF centres (section II-B, Fig. 3): stylised 7x12 digits, '#' is +1 and '.' is -1.
_DIGITS = """
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
..###.. ...#... ..###.. .#####. .....#. ####### ..####. ####### .#####. .#####.
.#...#. ..##... .#...#. #.....# ....##. #...... .#..... ......# #.....# #.....#
#.....# .#.#... #.....# ......# ...#.#. #...... #...... .....#. #.....# #.....#
#.....# ...#... ......# ......# ..#..#. ######. #...... ....#.. #.....# #.....#
#.....# ...#... .....#. ..####. .#...#. ......# ######. ...#... .#####. #.....#
#.....# ...#... ....#.. ......# #....#. ......# #.....# ...#... #.....# .######
#.....# ...#... ...#... ......# ####### ......# #.....# ..#.... #.....# ......#
#.....# ...#... ..#.... ......# .....#. ......# #.....# ..#.... #.....# ......#
.#...#. ...#... .#..... #.....# .....#. #.....# #.....# ..#.... #.....# .....#.
..###.. .#####. ####### .#####. .....#. .#####. .#####. ..#.... .#####. .####..
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""


def digit_codes() -> np.ndarray:
    """The ten 7x12 digit bitmaps as an (84, 10) array of +1/-1, row-major per bitmap."""
    rows = [line.split() for line in _DIGITS.strip().splitlines()]
    bitmaps = np.array([[list(row[d]) for row in rows] for d in range(10)])  # (10, 12, 7)
    return np.where(bitmaps == "#", 1.0, -1.0).reshape(10, -1).T.astype("float32")


def rbf_codes(dim: int, units: int) -> np.ndarray:
    """Fixed +1/-1 RBF centres, shape (dim, units).

    The digit bitmaps for up to ten classes on 84 F6 units (the paper's case); otherwise
    seeded random +1/-1 codes, the distributed codes section II-B recommends for many classes.
    """
    if dim == F6_UNITS and units <= 10:
        return digit_codes()[:, :units]
    rng = np.random.default_rng(0)
    return rng.choice(np.array([-1.0, 1.0], "float32"), size=(dim, units))


@keras.saving.register_keras_serializable(package="transferkit")
def scaled_tanh(x: Any) -> Any:
    """LeCun's squashing function ``1.7159 tanh(2x/3)`` (Appendix A): f(1) = 1, f(-1) = -1."""
    return 1.7159 * ops.tanh(x * (2.0 / 3.0))


@keras.saving.register_keras_serializable(package="transferkit")
class Subsampling(keras.layers.Layer):
    """LeNet's S layers: ``activation(coefficient * sum of the 2x2 window + bias)`` per map.

    Hand-written because no Keras layer shares one weight across a window per map
    (DepthwiseConv2D learns one weight per window position).

    Args:
        pool_size: Side of the non-overlapping window.
        activation: Activation applied after the affine map.
    """

    def __init__(self, pool_size: int = 2, activation: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.activation = keras.activations.get(activation)

    def build(self, input_shape: Any) -> None:
        maps = input_shape[-1]
        # 1/window makes the initial layer an average pool.
        init = keras.initializers.Constant(1.0 / self.pool_size**2)
        self.coefficient = self.add_weight(shape=(maps,), initializer=init, name="coefficient")
        self.bias = self.add_weight(shape=(maps,), initializer="zeros", name="bias")

    def call(self, inputs: Any) -> Any:
        window = self.pool_size
        sums = ops.average_pool(inputs, window, window, padding="valid") * float(window**2)
        return self.activation(sums * self.coefficient + self.bias)

    def compute_output_shape(self, input_shape: Any) -> Any:
        n, h, w, c = input_shape
        p = self.pool_size
        return (n, None if h is None else h // p, None if w is None else w // p, c)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "activation": keras.activations.serialize(self.activation),
        }


@keras.saving.register_keras_serializable(package="transferkit")
class TableConv2D(keras.layers.Layer):
    """A valid 2-D convolution where output map ``j`` sees only the input maps ``table[j]``.

    Only the connected kernels are weights (C3: 60 5x5 kernels + 16 biases = 1,516), so the
    parameter count is the paper's. Hand-written because Keras' grouped Conv2D only splits
    channels into equal disjoint groups, and Table I's sets overlap.

    Args:
        table: For each output map, the indices of the input maps it is connected to.
        kernel_size: Side of the square kernel.
        activation: Activation applied after the bias.
    """

    def __init__(
        self,
        table: Any,
        kernel_size: int = 5,
        activation: Any = None,
        kernel_initializer: Any = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = tuple(tuple(int(i) for i in inputs) for inputs in table)
        self.kernel_size = kernel_size
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape: Any) -> None:
        channels = input_shape[-1]
        used = max(max(inputs) for inputs in self.table) + 1
        if channels is None or channels < used:
            raise ConfigError(
                f"{self.name}: the connection table uses {used} input maps, got {channels}"
            )
        k, filters = self.kernel_size, len(self.table)
        # index[i, j]: 1 + position of connection (input i -> output j) in the kernel; 0 = none.
        index = np.zeros((channels, filters), dtype="int32")
        position = 1
        for j, inputs in enumerate(self.table):
            for i in inputs:
                index[i, j] = position
                position += 1
        self._index = index.reshape(-1)
        self._full_shape = (k, k, channels, filters)
        self.kernel = self.add_weight(
            shape=(k, k, position - 1), initializer=self.kernel_initializer, name="kernel"
        )
        self.bias = self.add_weight(shape=(filters,), initializer="zeros", name="bias")

    def full_kernel(self) -> Any:
        """The equivalent dense (k, k, in, out) kernel, zero where Table I has no connection."""
        k = self.kernel_size
        padded = ops.concatenate([ops.zeros((k, k, 1), self.kernel.dtype), self.kernel], axis=-1)
        return ops.reshape(ops.take(padded, self._index, axis=-1), self._full_shape)

    def call(self, inputs: Any) -> Any:
        kernel = ops.cast(self.full_kernel(), inputs.dtype)
        x = ops.conv(inputs, kernel, strides=1, padding="valid")
        return self.activation(x + ops.cast(self.bias, inputs.dtype))

    def compute_output_shape(self, input_shape: Any) -> Any:
        n, h, w, _ = input_shape
        shrink = self.kernel_size - 1
        return (
            n,
            None if h is None else h - shrink,
            None if w is None else w - shrink,
            len(self.table),
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "table": [list(inputs) for inputs in self.table],
            "kernel_size": self.kernel_size,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="transferkit")
class EuclideanRBF(keras.layers.Layer):
    """LeNet-5's output layer: ``y_i = sum_j (x_j - w_ij)^2`` against fixed +1/-1 centres.

    ``y_i`` is the penalty of class ``i`` (smallest wins). With ``activation=None`` the layer
    returns the penalties, as the paper; otherwise it returns ``activation(-y)``, so
    ``"softmax"`` gives ``exp(-y_i) / sum_k exp(-y_k)``, the posterior of the paper's MAP
    criterion (eq. 9) without the rubbish class, trainable with sparse cross-entropy.
    The centres are non-trainable weights (:func:`rbf_codes`).

    Args:
        units: Number of classes.
        activation: ``None`` for penalties, or an activation of the negative penalties.
    """

    def __init__(self, units: int, activation: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.activation = None if activation is None else keras.activations.get(activation)

    def build(self, input_shape: Any) -> None:
        dim = input_shape[-1]
        self.centres = self.add_weight(
            shape=(dim, self.units), initializer="zeros", trainable=False, name="centres"
        )
        self.centres.assign(rbf_codes(dim, self.units))

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        penalties = ops.sum(ops.square(ops.expand_dims(x, -1) - self.centres), axis=1)
        return penalties if self.activation is None else self.activation(-penalties)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.units)

    def get_config(self) -> dict[str, Any]:
        activation = self.activation and keras.activations.serialize(self.activation)
        return {**super().get_config(), "units": self.units, "activation": activation}


def rbf_output(x: Any, num_classes: int, activation: str | None) -> Any:
    """The shared head's ``output`` in the faithful form: :class:`EuclideanRBF` ``predictions``."""
    rbf = EuclideanRBF(num_classes, activation=activation, dtype="float32", name="predictions")
    return rbf(x)


def lenet_layer(
    x: Any, kind: str, maps: int, size: int, table: Any, faithful: bool, name: str
) -> Any:
    """One layer of Fig. 2: a valid ``size`` x ``size`` convolution, or subsampling by ``size``.

    Faithful: scaled tanh, trainable :class:`Subsampling`, and the connection ``table`` when
    given. Modern: ReLU, max pooling, every conv connected to all input maps.
    """
    activation = scaled_tanh if faithful else "relu"
    if kind == "subsampling":
        if faithful:
            return Subsampling(size, activation=activation, name=name)(x)
        return keras.layers.MaxPooling2D(size, name=name)(x)
    if faithful and table is not None:
        return TableConv2D(table, size, activation=activation, name=name)(x)
    return keras.layers.Conv2D(maps, size, activation=activation, name=name)(x)


def lenet5(x: Any, faithful: bool = False) -> Any:
    """LeNet-5 backbone (headless): C1, S2, C3, S4, C5.

    Args:
        x: Preprocessed image tensor.
        faithful: Build the paper's layers (scaled tanh, trainable subsampling, Table I C3);
            the paper's input, 32x32x1, is then the only one accepted. The paper's F6 and RBF
            output are the head of ``lenet5_faithful``.

    Returns:
        The C5 feature map (1x1x120 on a 32x32 input).

    Raises:
        ConfigError: inputs smaller than 32x32, or ``faithful`` with another input shape.
    """
    check_min_size(x, INPUT_SHAPE[0], "LeNet-5")
    if faithful and tuple(x.shape[1:]) != INPUT_SHAPE:
        raise ConfigError(
            f"faithful LeNet-5 takes the paper's 32x32x1 input, got {tuple(x.shape[1:])}; use "
            "input_shape=(32, 32, 1), or faithful=False for other sizes and colour images"
        )
    for name, kind, maps, size, table in LAYERS:
        x = lenet_layer(x, kind, maps, size, table, faithful, name)
    return x


MODERN_HEAD = {"pooling": "flatten", "hidden_units": (F6_UNITS,)}
FAITHFUL_HEAD = {**MODERN_HEAD, "hidden_activation": scaled_tanh, "output": rbf_output}


def lenet_head(kwargs: Any) -> dict[str, Any]:
    """``faithful=True`` changes the head too: scaled-tanh F6 and fixed RBF output units."""
    return FAITHFUL_HEAD if kwargs.get("faithful") else MODERN_HEAD


_COMMON = dict(
    family="lenet",
    builder=lenet5,
    input_shape=INPUT_SHAPE,
    min_size=INPUT_SHAPE[0],
    preprocessing="tf",  # no published weights; the paper also centres pixels near zero
    stages=("stage1", "stage2", "stage3"),
    paper_params=PAPER_PARAMS,
    paper_classes=10,
    paper=PAPER,
)
register_model(
    ModelInfo(
        name="lenet5",
        kwargs={"faithful": False},
        head=lenet_head,
        **_COMMON,
    ),
    aliases=("lenet",),
)
register_model(
    ModelInfo(
        name="lenet5_faithful",
        kwargs={"faithful": True},
        head=lenet_head,
        fixed_input=True,
        **_COMMON,
    )
)
