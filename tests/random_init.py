"""A saved random initialisation: finetune refuses ``weights=None`` (a frozen random base learns
nothing), so tests of its mechanics start from a random init saved as a weights file."""

from __future__ import annotations

from pathlib import Path


def random_init(path: Path, base: str = "resnet20", num_classes: int = 2, image_size: int = 32) -> str:
    """Saves the model ``build_model(base, num_classes, None, image_size)`` builds after
    ``set_random_seed(0)`` (what finetune with seed 0 built from random init) and returns the path."""
    import keras

    from transferkit.models import build_model

    keras.utils.set_random_seed(0)
    path = Path(path)
    if not path.is_file():
        build_model(base, num_classes, None, image_size).save_weights(path)
    return str(path)
