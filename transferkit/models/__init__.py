"""Models: the registry, the one factory (name -> model with weights), pretrained weights,
custom layers, the shared head, and one module per family.

Importing this package registers every family: each module holds its spec table, its one block
function and its registrations.
"""

from transferkit.models import layers  # noqa: F401  (registers the custom layers)
from transferkit.models import mobilenet  # noqa: F401
from transferkit.models import efficientnet  # noqa: F401
from transferkit.models import googlenet  # noqa: F401
from transferkit.models import resnet  # noqa: F401
from transferkit.models import lenet  # noqa: F401
from transferkit.models import alexnet  # noqa: F401
from transferkit.models import vgg  # noqa: F401
from transferkit.models import wide_resnet  # noqa: F401
from transferkit.models import densenet  # noqa: F401
from transferkit.models.factory import (
    base_of,
    build_model,
    checked_image_size,
    create_backbone,
    create_model,
    default_image_size,
    drop_path_option,
    inference_model,
    pretrained_classifier,
)
from transferkit.models.head import classification_head
from transferkit.models.registry import ModelInfo, get_model_info, list_models

__all__ = [
    "ModelInfo",
    "base_of",
    "build_model",
    "checked_image_size",
    "classification_head",
    "create_backbone",
    "create_model",
    "default_image_size",
    "drop_path_option",
    "get_model_info",
    "inference_model",
    "list_models",
    "pretrained_classifier",
]
