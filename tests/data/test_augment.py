"""RandomAffine: the same draws as the Keras layers it fuses, one resample, seeded, serializable."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from transferkit.data.augment import RandomAffine
from transferkit.data.pipeline import build_augmentation
from transferkit.errors import ConfigError


def noise(n: int = 4, h: int = 40, w: int = 32) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (n, h, w, 3)).astype("float32")


def smooth(n: int = 2, h: int = 48, w: int = 40) -> np.ndarray:
    """Slowly varying images: two bilinear passes and one agree on them, unlike on noise."""
    y, x = np.mgrid[0:h, 0:w].astype("float32")
    image = np.stack([100 + 80 * np.sin(x / 7 + k) * np.cos(y / 9 - k) + x + y / 2 for k in range(3)], -1)
    return np.repeat(image[None], n, 0).astype("float32")


def test_flip_gives_the_image_or_its_mirror_and_both_occur() -> None:
    x = noise(16)
    out = np.asarray(RandomAffine(flip="horizontal", seed=1)(x, training=True))
    mirrored = [bool(np.array_equal(o, m[:, ::-1])) for o, m in zip(out, x)]
    same = [bool(np.array_equal(o, m)) for o, m in zip(out, x)]
    assert all(a != b for a, b in zip(mirrored, same)) and any(mirrored) and any(same)


@pytest.mark.parametrize(
    "ours, keras_layer",
    [
        (dict(rotation=(0.07, 0.07)), keras.layers.RandomRotation((0.07, 0.07))),
        (dict(rotation=(-0.3, -0.3)), keras.layers.RandomRotation((-0.3, -0.3))),
        (dict(zoom=(0.2, 0.2)), keras.layers.RandomZoom((0.2, 0.2))),
        (dict(zoom=(-0.3, -0.3), zoom_width=(0.1, 0.1)), keras.layers.RandomZoom((-0.3, -0.3), (0.1, 0.1))),
        (dict(translation=(0.1, 0.1), translation_width=(-0.2, -0.2)), keras.layers.RandomTranslation((0.1, 0.1), (-0.2, -0.2))),
    ],
    ids=["rotation", "rotation_clockwise", "zoom_out", "zoom_in_and_out", "translation"],
)
def test_fixed_step_matches_the_keras_layer(ours: dict, keras_layer: keras.layers.Layer) -> None:
    x = noise()
    expected = np.asarray(keras_layer(x, training=True))
    np.testing.assert_allclose(np.asarray(RandomAffine(**ours)(x, training=True)), expected, atol=0.01)


@pytest.mark.parametrize("order", [("rotation", "zoom", "translation"), ("translation", "rotation", "zoom")])
def test_fused_steps_match_the_keras_chain_in_order(order: tuple[str, ...]) -> None:
    keras_layers = {
        "rotation": keras.layers.RandomRotation((0.05, 0.05)),
        "zoom": keras.layers.RandomZoom((0.2, 0.2)),
        "translation": keras.layers.RandomTranslation((0.1, 0.1), (0.05, 0.05)),
    }
    x = smooth()
    chain = np.asarray(keras.Sequential([keras_layers[name] for name in order])(x, training=True))
    fused = RandomAffine(rotation=(0.05, 0.05), zoom=(0.2, 0.2), translation=(0.1, 0.1), translation_width=(0.05, 0.05), order=order)
    out = np.asarray(fused(x, training=True))
    # Borders differ by design: the chain reflects intermediate results, the fused layer the original.
    np.testing.assert_allclose(out[:, 12:-12, 12:-12], chain[:, 12:-12, 12:-12], atol=1.5)


def test_seeded_reproducible_and_fresh_draws_per_call() -> None:
    x = noise()
    spec = dict(flip="horizontal", rotation=0.1, zoom=0.1, translation=0.1)
    a, b = RandomAffine(**spec, seed=3), RandomAffine(**spec, seed=3)
    first = np.asarray(a(x, training=True))
    np.testing.assert_array_equal(first, np.asarray(b(x, training=True)))
    assert not np.allclose(first, np.asarray(a(x, training=True)))
    assert not np.allclose(first[0], first[1])  # per image, not one draw for the batch


def test_identity_when_not_training() -> None:
    x = noise()
    layer = RandomAffine(flip="horizontal_and_vertical", rotation=0.2, zoom=0.2, translation=0.2)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_config_and_keras_file_round_trip(tmp_path: Path) -> None:
    order = ("zoom", "flip", "rotation", "translation")
    layer = RandomAffine(flip="vertical", rotation=(-0.1, 0.2), zoom=0.1, translation=0.05, order=order, seed=7)
    clone = RandomAffine.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    x = noise()
    np.testing.assert_array_equal(np.asarray(clone(x, training=True)), np.asarray(layer(x, training=True)))

    inputs = keras.Input((40, 32, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(layer(inputs)))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    restored = [l for l in loaded.layers if isinstance(l, RandomAffine)]
    assert len(restored) == 1 and restored[0].get_config() == layer.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_runs_in_a_tf_data_map() -> None:
    x = noise(6)
    layer = RandomAffine(flip="horizontal", rotation=0.1, zoom=0.1, seed=0)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4).map(lambda b: layer(b, training=True))
    batches = [b.numpy() for b in ds]
    assert [b.shape for b in batches] == [(4, 40, 32, 3), (2, 40, 32, 3)]
    out = np.concatenate(batches)
    assert np.isfinite(out).all() and not np.allclose(out, x)
    again = np.concatenate([b.numpy() for b in ds])
    assert not np.allclose(out, again)  # the seed generator advances inside the graph too


def test_build_augmentation_fuses_runs_of_geometric_items() -> None:
    layers = build_augmentation("flip,rotation,zoom,contrast", 0, 32).layers
    assert [type(l) for l in layers] == [RandomAffine, keras.layers.RandomContrast]
    assert layers[0].order == ("flip", "rotation", "zoom") and layers[0].flip == "horizontal"
    # A non-geometric item or a repeated name ends a run.
    layers = build_augmentation("zoom,crop,translation=0.2,flip,translation", 0, 32).layers
    assert [l.order if isinstance(l, RandomAffine) else l.name for l in layers] == [
        ("zoom",), "crop", ("translation", "flip"), ("translation",)
    ]
    assert layers[2].translation == 0.2


def test_bad_arguments_say_what_was_received() -> None:
    with pytest.raises(ConfigError, match="rotation takes .* got 1.5"):
        RandomAffine(rotation=1.5)
    with pytest.raises(ConfigError, match="flip takes .* got 'sideways'"):
        RandomAffine(flip="sideways")
    with pytest.raises(ConfigError, match=r"zoom takes .* \(-1, 1\], got \(-1, 0\)"):
        RandomAffine(zoom=(-1, 0))
