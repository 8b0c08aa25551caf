"""The shared transfer layer: which part of a model trains (:mod:`.freeze`), how it is
optimised (:mod:`.optimizers`), and frozen layers computed once (:mod:`.features`)."""

from transferkit.transfer.freeze import (
    base_layers,
    block_names,
    freeze,
    frozen_prefix,
    resolve_unfreeze,
    split_head,
    stage_names,
    trainable_from_last_blocks,
    unfreeze_schedule,
)
from transferkit.transfer.optimizers import (
    OPTIMIZERS,
    PRECISIONS,
    LRMultipliers,
    check_precision,
    lr_multiplier,
    make_optimizer,
    parse_lr_mult,
    precision,
)

__all__ = [
    "OPTIMIZERS",
    "PRECISIONS",
    "LRMultipliers",
    "base_layers",
    "block_names",
    "check_precision",
    "freeze",
    "frozen_prefix",
    "lr_multiplier",
    "make_optimizer",
    "parse_lr_mult",
    "precision",
    "resolve_unfreeze",
    "split_head",
    "stage_names",
    "trainable_from_last_blocks",
    "unfreeze_schedule",
]
