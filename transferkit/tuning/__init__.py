"""Hyperparameter search with keras-tuner: spaces as data (:mod:`.space`) and the search
(:mod:`.search`)."""

from transferkit.tuning.search import TransferHyperModel, TuneResult, distributed_role, make_strategy, tune
from transferkit.tuning.space import PRESETS, check_space, declare, model_arguments, preset_space, read_space

__all__ = [
    "PRESETS",
    "TransferHyperModel",
    "TuneResult",
    "check_space",
    "declare",
    "distributed_role",
    "make_strategy",
    "model_arguments",
    "preset_space",
    "read_space",
    "tune",
]
