"""transferkit: transfer learning on images with Keras 3.

Faithful, parametric builders for the classic CNNs behind one registry and one shared head,
and the two modes of transfer learning (use as-is, fine-tune) and training from scratch
(``train``) from the command line or Python.

The front door is lazy: ``import transferkit`` loads no TensorFlow (so the command line answers
``--help`` at once); the first use of a name below (``tk.finetune``, ``tk.create_model``, ...)
imports what it needs. Keras finds transferkit's custom layers once ``transferkit.models`` is
imported (any of those names does it), so ``keras.saving.load_model`` reads transferkit's ``.keras``
files after ``import transferkit.models``.
"""

import importlib
import os
from typing import Any

# TensorFlow's C++ info logs drown the progress bars; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from transferkit._version import __version__  # noqa: E402
from transferkit.errors import ConfigError, DataError, TransferkitError, WeightsError  # noqa: E402

# Public name -> the module that defines it, imported on first use.
_LAZY = {
    "ModelInfo": "transferkit.models",
    "classification_head": "transferkit.models",
    "create_backbone": "transferkit.models",
    "create_model": "transferkit.models",
    "get_model_info": "transferkit.models",
    "list_models": "transferkit.models",
    "pretrained_classifier": "transferkit.models",
    "freeze": "transferkit.transfer",
    "ExtractConfig": "transferkit.runs.config",
    "FinetuneConfig": "transferkit.runs.config",
    "export": "transferkit.runs.export",
    "Run": "transferkit.runs.notebook",
    "TrainConfig": "transferkit.runs.config",
    "train": "transferkit.runs.notebook",
    "extract": "transferkit.runs.notebook",
    "finetune": "transferkit.runs.notebook",
    "load": "transferkit.runs.notebook",
    "lr_find": "transferkit.runs.notebook",
    "LRFindConfig": "transferkit.runs.config",
    "predict": "transferkit.runs.notebook",
    "evaluate": "transferkit.runs.notebook",
    "tune": "transferkit.tuning.search",
    "load_data": "transferkit.data",
}
_SUBPACKAGES = ("cli", "data", "inference", "models", "runs", "transfer", "tuning")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"transferkit.{name}")
    else:
        raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))


__all__ = [
    "__version__",
    "ConfigError",
    "DataError",
    "TransferkitError",
    "WeightsError",
    *sorted(_LAZY),
]
