"""tf.data pipelines from (path, label) lists: parallel decode, resize, cache, shuffle, batch, prefetch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def decode_and_resize(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """Reads an image file as ``image_size x image_size x 3`` uint8 RGB.

    Grayscale and alpha become RGB; a GIF gives its first frame. The largest centred region with
    the target's aspect ratio is kept (no distortion), then resized with antialiasing.
    """
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    side = tf.minimum(h, w)
    image = tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2, side, side)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def default_augmentation(seed: int = 0) -> keras.Sequential:
    """Flip, small rotation and zoom: label-preserving for most photo datasets."""
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.05, seed=seed),
            keras.layers.RandomZoom(0.1, seed=seed),
        ],
        name="augmentation",
    )


def make_dataset(
    files: Sequence[str],
    labels: Sequence[int],
    image_size: int,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augmentation: Any = None,
) -> tf.data.Dataset:
    """Batches of ``(float32 0-255 images, int32 labels)``.

    Decoded, resized images are cached in memory as uint8 after the first pass; training data
    is reshuffled every epoch (seeded) and augmented after the cache, validation data never.
    Files that fail to decode are dropped rather than stopping the run.
    """
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(list(files), tf.string), tf.constant(list(labels), tf.int32))
    )
    ds = ds.map(
        lambda p, y: (decode_and_resize(p, image_size), y),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    ds = ds.ignore_errors().cache()
    if training:
        ds = ds.shuffle(max(len(files), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if training and augmentation is not None:
        ds = ds.map(
            lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=AUTOTUNE
        )
    return ds.prefetch(AUTOTUNE)
