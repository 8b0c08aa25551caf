"""transferkit: transfer learning on images with Keras 3.

Faithful, parametric builders for the classic CNNs behind one registry and one shared head,
and the two modes of transfer learning (use as-is, fine-tune) from the command line or Python.

Public names load lazily, so ``transferkit --help`` answers without importing TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "transferkit.errors",
    "DataError": "transferkit.errors",
    "TransferkitError": "transferkit.errors",
    "WeightsError": "transferkit.errors",
    "classification_head": "transferkit.head",
    "ModelInfo": "transferkit.registry",
    "create_backbone": "transferkit.registry",
    "create_model": "transferkit.registry",
    "get_model_info": "transferkit.registry",
    "list_models": "transferkit.registry",
    "freeze": "transferkit.transfer",
    "FinetuneConfig": "transferkit.train",
    "finetune": "transferkit.train",
    "load_data": "transferkit.data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))
