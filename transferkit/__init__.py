"""transferkit: transfer learning on images with Keras 3.

Faithful, parametric builders for the classic CNNs behind one registry and one shared head,
and the two modes of transfer learning (use as-is, fine-tune) from the command line or Python.
"""

from transferkit.errors import ConfigError, DataError, TransferkitError, WeightsError
from transferkit.head import classification_head
from transferkit.registry import (
    ModelInfo,
    create_backbone,
    create_model,
    get_model_info,
    list_models,
)
from transferkit.transfer import freeze

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "ModelInfo",
    "TransferkitError",
    "WeightsError",
    "classification_head",
    "create_backbone",
    "create_model",
    "freeze",
    "get_model_info",
    "list_models",
]
