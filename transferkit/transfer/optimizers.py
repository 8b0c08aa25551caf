"""Optimizers of a transfer run: per-stage learning-rate multipliers and mixed precision."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import keras

from transferkit.errors import ConfigError
from transferkit.models.head import HEAD_PREFIXES


# --- Per-stage learning-rate multipliers --------------------------------------------------------


def parse_lr_mult(text: str | float | Mapping[str, float] | None) -> dict[str, float] | None:
    """``0.1`` (the whole base) or ``"stage4=0.1,stage5=0.3"`` (per stage or layer prefix; ``base``
    sets the default of the other base layers) as a ``{prefix: multiplier}`` dict."""
    if text is None or text == "":
        return None
    if isinstance(text, Mapping):
        rules = {str(k): float(v) for k, v in text.items()}
    elif isinstance(text, (int, float)):
        rules = {"base": float(text)}
    else:
        rules = {}
        for item in str(text).split(","):
            key, sep, value = item.strip().partition("=")
            if not sep:
                key, value = "base", key
            try:
                rules[key.strip()] = float(value)
            except ValueError:
                raise ConfigError(
                    f"--lr-mult takes a number (e.g. 0.1) or stage=number pairs (e.g. "
                    f"'stage4=0.1,stage5=0.3'), got {text!r}"
                ) from None
    for key, value in rules.items():
        if value < 0:
            raise ConfigError(f"learning-rate multipliers must be >= 0, got {key}={value}")
    return rules


def lr_multiplier(path: str, rules: Mapping[str, float]) -> float:
    """The multiplier of the variable at ``path`` (``.../stage4_block1_pw/kernel``).

    The longest rule that prefixes one of the path's layer names wins; head variables get 1 (or
    the ``head`` rule); other base variables get the ``base`` rule (default 1).
    """
    names = path.split("/")[:-1] or [path]
    best: tuple[int, float] | None = None
    for key, value in rules.items():
        if key in ("base", "head"):
            continue
        if any(n == key or n.startswith(key + "_") for n in names):
            if best is None or len(key) > best[0]:
                best = (len(key), value)
    if best is not None:
        return best[1]
    if any(n.startswith(HEAD_PREFIXES) for n in names):
        return float(rules.get("head", 1.0))
    return float(rules.get("base", 1.0))


class LRMultipliers:
    """Mixin for a Keras optimizer: scales the learning rate of each variable by a multiplier.

    The multiplier scales both the gradient step and the weight decay (``weight_decay`` of AdamW,
    or of any Keras optimizer), so a variable with multiplier 0 never changes. Both happen in
    ``update_step``, which Keras calls per variable with the learning rate (also per replica under
    ``tf.distribute``), so it works with ``model.fit`` and distribution strategies; the rules are
    part of ``get_config``, so a compiled ``.keras`` file reloads with them. Keras has no
    per-variable learning rate, hence this mixin.
    """

    def __init__(self, *args: Any, lr_multipliers: Mapping[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self._multipliers: list[float] = []

    def build(self, variables: Any) -> None:
        self._multipliers = [lr_multiplier(v.path, self.lr_multipliers) for v in variables]
        super().build(variables)

    def _apply_weight_decay(self, variables: Any) -> None:
        """Keras decays every variable here with the unscaled learning rate; ``update_step``
        does it instead, with the variable's own."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> Any:
        scale = self._multipliers[self._get_variable_index(variable)]
        if scale != 1.0:
            learning_rate = learning_rate * scale
        if self.weight_decay is not None and scale != 0.0 and self._use_weight_decay(variable):
            # Keras' decoupled decay, before the step as in ``BaseOptimizer.apply``.
            lr = keras.ops.cast(learning_rate, variable.dtype)
            wd = keras.ops.cast(self.weight_decay, variable.dtype)
            self.assign_sub(variable, variable * wd * lr)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "lr_multipliers": dict(self.lr_multipliers)}


@keras.saving.register_keras_serializable(package="transferkit")
class MultipliedAdam(LRMultipliers, keras.optimizers.Adam):
    """Adam with per-stage learning-rate multipliers (see :class:`LRMultipliers`)."""


@keras.saving.register_keras_serializable(package="transferkit")
class MultipliedAdamW(LRMultipliers, keras.optimizers.AdamW):
    """AdamW with per-stage learning-rate multipliers (see :class:`LRMultipliers`)."""


@keras.saving.register_keras_serializable(package="transferkit")
class MultipliedSGD(LRMultipliers, keras.optimizers.SGD):
    """SGD with per-stage learning-rate multipliers (see :class:`LRMultipliers`)."""


@keras.saving.register_keras_serializable(package="transferkit")
class MultipliedRMSprop(LRMultipliers, keras.optimizers.RMSprop):
    """RMSprop with per-stage learning-rate multipliers (see :class:`LRMultipliers`)."""


OPTIMIZERS = {
    "adam": (keras.optimizers.Adam, MultipliedAdam),
    "adamw": (keras.optimizers.AdamW, MultipliedAdamW),
    "sgd": (keras.optimizers.SGD, MultipliedSGD),
    "rmsprop": (keras.optimizers.RMSprop, MultipliedRMSprop),
}


def ema_options(momentum: float | None) -> dict[str, Any]:
    """Keyword arguments of a Keras optimizer that keep an exponential moving average of the
    weights with ``momentum`` (None: none). ``fit`` swaps the averages into the model when it
    ends (``optimizer.finalize_variable_values``), so what is saved after it is the average."""
    if momentum is None:
        return {}
    if not 0.0 < momentum < 1.0:
        raise ConfigError(f"ema momentum must be between 0 and 1 (e.g. 0.999), got {momentum}")
    return {"use_ema": True, "ema_momentum": float(momentum)}


def make_optimizer(
    name: str = "adam", learning_rate: float = 1e-3, lr_mult: Any = None, ema: float | None = None, **kwargs: Any
) -> keras.optimizers.Optimizer:
    """A Keras optimizer; with learning-rate multipliers (see :func:`parse_lr_mult`) its
    ``Multiplied*`` form; with ``ema`` a momentum, weight averaging (:func:`ema_options`)."""
    kwargs.update(ema_options(ema))
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    plain, multiplied = OPTIMIZERS[key]
    rules = parse_lr_mult(lr_mult)
    if key == "sgd":
        kwargs.setdefault("momentum", 0.9)
    if rules is None:
        return plain(learning_rate=learning_rate, **kwargs)
    return multiplied(learning_rate=learning_rate, lr_multipliers=rules, **kwargs)


# --- Mixed precision ----------------------------------------------------------------------------

PRECISIONS = ("mixed_float16", "mixed_bfloat16")


def check_precision(policy: str | None) -> str | None:
    """``policy`` if it names a mixed-precision policy, None for float32."""
    if policy in (None, "", "float32", "none"):
        return None
    if policy not in PRECISIONS:
        raise ConfigError(f"mixed precision must be one of {', '.join(PRECISIONS)}, got {policy!r}")
    return policy


@contextmanager
def precision(policy: str | None) -> Iterator[None]:
    """Builds and trains under a Keras mixed-precision policy, restoring the previous one after.

    The shared head's ``predictions`` layer is float32, so the softmax and the loss stay float32;
    under ``mixed_float16`` ``compile`` wraps the optimizer in a ``LossScaleOptimizer``.
    """
    policy = check_precision(policy)
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
