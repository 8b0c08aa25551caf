"""transferkit: transfer learning on images with Keras 3.

Faithful, parametric builders for the classic CNNs behind one registry and one shared head,
and the two modes of transfer learning (use as-is, fine-tune) and training from scratch
(``train``) from the command line or Python.
Importing transferkit registers every model and custom layer, so ``keras.saving.load_model``
reads transferkit's ``.keras`` files after ``import transferkit``.
"""

import os

# TensorFlow's C++ info logs drown the progress bars; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from transferkit._version import __version__  # noqa: E402
from transferkit.errors import ConfigError, DataError, TransferkitError, WeightsError  # noqa: E402
from transferkit.models import (  # noqa: E402  (importing registers every family and custom layer)
    ModelInfo,
    classification_head,
    create_backbone,
    create_model,
    get_model_info,
    list_models,
    pretrained_classifier,
)
from transferkit.transfer import freeze  # noqa: E402
from transferkit.runs.extract import ExtractConfig, extract  # noqa: E402
from transferkit.runs.finetune import FinetuneConfig, finetune  # noqa: E402
from transferkit.runs.train import TrainConfig, train  # noqa: E402
from transferkit.data import load_data  # noqa: E402

__all__ = [
    "__version__",
    "ConfigError",
    "DataError",
    "ExtractConfig",
    "FinetuneConfig",
    "ModelInfo",
    "TrainConfig",
    "TransferkitError",
    "WeightsError",
    "classification_head",
    "create_backbone",
    "create_model",
    "extract",
    "finetune",
    "freeze",
    "get_model_info",
    "list_models",
    "load_data",
    "pretrained_classifier",
    "train",
]
