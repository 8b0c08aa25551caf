"""The run folder's SavedModel: what a serving system (TF Serving, Vertex AI, a Cloud Function)
uses as it is, without transferkit.

Signatures, all with the same named outputs ``probabilities`` (classes in ``labels.txt`` order),
``top_k_indices``, ``top_k_scores`` and ``top_k_labels`` (k = min(5, classes)):

- ``serving_default``: float32 images ``[batch, height, width, 3]`` of any size (0-255 RGB);
- ``serving_uint8``: the same for uint8 images;
- ``serve_bytes``: ``images_bytes``, a batch of encoded JPEG, PNG, GIF, BMP or WebP files (the
  ``_bytes`` suffix makes TF Serving's REST API decode ``{"b64": ...}`` for it).

Inside, the images take the decode road's own steps (:mod:`transferkit.data.pipeline`:
``decode_bytes``, ``square_resize``, ``apply_orientation``, ``to_channels``) with the same
choices :func:`~transferkit.data.pipeline.decode_files` makes from a file's header (JPEG DCT
scale, antialiasing, EXIF orientation), made here in the graph, so a served photo gives what
``transferkit predict`` gives for the file. The class names are a constant in the graph, and a
copy is in ``assets.extra/labels.txt``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from transferkit.data import pipeline
from transferkit.data.probe import FORMAT_CODES
from transferkit.inference.predict import main_output

TOP_K = 5
BYTES_INPUT = "images_bytes"
# (format, magic bytes at offset 0) as the header probe sniffs them (WebP: RIFF....WEBP).
_MAGIC = (("jpeg", b"\xff\xd8\xff"), ("png", b"\x89PNG\r\n\x1a\n"), ("gif", b"GIF87a"), ("gif", b"GIF89a"), ("bmp", b"BM"))
# Where the header probe looks for the EXIF block: it stops at the frame header, which follows
# the APP segments, so a JPEG's first 64 KB hold it unless a bigger colour profile comes first.
_EXIF_WINDOW = 65536


def export_saved_model(model: keras.Model, path: str | os.PathLike[str], class_names: Sequence[str]) -> None:
    """Writes ``model`` with the serving signatures (see the module docstring) at ``path``.

    Preprocessing (rescaling) is part of the model; dropout and augmentation run in inference
    mode.
    """
    size, channels = model.input_shape[1], model.input_shape[-1]
    names = [str(n) for n in class_names]
    k = min(TOP_K, len(names))

    # Traced once, called by every endpoint: the model is traced once rather than per signature.
    @tf.function(input_signature=[tf.TensorSpec([None, size, size, channels], tf.uint8)], autograph=False)
    def classify(squares: tf.Tensor) -> dict[str, tf.Tensor]:
        # An empty batch classifies nothing, without the model: TensorFlow's oneDNN convolution
        # (the default on x86) hands an empty batch back unchanged on some CPUs (AVX-512 here),
        # and the next layer then fails on the input's shape.
        probs = tf.cond(
            tf.shape(squares)[0] > 0,
            lambda: tf.cast(main_output(model(tf.cast(squares, tf.float32), training=False)), tf.float32),
            lambda: tf.zeros([0, len(names)], tf.float32),
        )
        scores, indices = tf.math.top_k(probs, k)
        return {
            "probabilities": probs,
            "top_k_indices": indices,
            "top_k_scores": scores,
            "top_k_labels": tf.gather(tf.constant(names), indices),
        }

    def from_pixels(images: tf.Tensor) -> dict[str, tf.Tensor]:
        squares = tf.map_fn(
            lambda image: square_from_pixels(image, size, channels),
            images,
            fn_output_signature=tf.TensorSpec([size, size, channels], tf.uint8),
        )
        return classify(squares)

    def from_bytes(images_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return classify(squares_from_bytes(images_bytes, size, channels))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", from_pixels, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")]
    )
    archive.add_endpoint(
        "serving_uint8", from_pixels, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]
    )
    archive.add_endpoint(
        "serve_bytes", from_bytes, input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)]
    )
    archive.write_out(str(path), verbose=False)
    extra = Path(path) / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / "labels.txt").write_text("".join(f"{n}\n" for n in names))
    (extra / "serving.json").write_text(json.dumps({"image_size": size, "channels": channels}) + "\n")


def is_saved_model(path: Path) -> bool:
    """A folder holding a SavedModel with these signatures (``serve_bytes``)."""
    return (path / "saved_model.pb").is_file() and (path / "assets.extra" / "serving.json").is_file()


class ServedModel:
    """A SavedModel written by :func:`export_saved_model`, called like a Keras classifier on
    squares of its size (what ``predict`` and ``evaluate`` give a model)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        folder = Path(path)
        info = json.loads((folder / "assets.extra" / "serving.json").read_text())
        self.class_names = [n for n in (folder / "assets.extra" / "labels.txt").read_text().splitlines() if n]
        self.input_shape = (None, info["image_size"], info["image_size"], info["channels"])
        self.output_shape = (None, len(self.class_names))
        self.loaded = tf.saved_model.load(str(folder))  # kept: the signature needs its variables
        self.signature = self.loaded.signatures["serving_default"]

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        if images.shape[-1] == 1:  # a grey model's squares: the signature takes RGB
            images = tf.image.grayscale_to_rgb(images)
        return self.signature(images=tf.cast(images, tf.float32))["probabilities"]


def square_from_pixels(image: tf.Tensor, size: int, channels: int) -> tf.Tensor:
    """A decoded ``H x W x 3`` image as the model's uint8 square: the decode road's crop and
    resize (antialiased above 2x reduction) and channels."""
    return pipeline.to_channels(pipeline.square_resize(tf.cast(image, tf.float32), size), channels)


def format_code(data: tf.Tensor) -> tf.Tensor:
    """The probe's format code (:data:`~transferkit.data.probe.FORMAT_CODES`) from the magic
    bytes; 0 when the bytes are none of the supported formats."""
    data = tf.strings.join([tf.strings.substr(data, 0, 12), b"\x00" * 12])  # substr past the end raises
    code = tf.constant(0)
    for name, magic in _MAGIC:
        hit = tf.equal(tf.strings.substr(data, 0, len(magic)), magic)
        code = tf.where(tf.equal(code, 0) & hit, FORMAT_CODES[name], code)
    webp = tf.equal(tf.strings.substr(data, 0, 4), b"RIFF") & tf.equal(tf.strings.substr(data, 8, 4), b"WEBP")
    code = tf.where(tf.equal(code, 0) & webp, FORMAT_CODES["webp"], code)
    return code


def exif_orientation(data: tf.Tensor) -> tf.Tensor:
    """The EXIF Orientation (1-8) of JPEG bytes, 1 when absent: what the header probe reads
    (:func:`transferkit.data.probe.exif_orientation`), in graph ops."""
    head = tf.strings.substr(data, 0, _EXIF_WINDOW)
    raw = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int32)
    n = tf.shape(raw)[0]
    padded = tf.concat([raw, tf.zeros([16], tf.int32)], 0)
    tag = tf.constant(list(b"Exif\x00\x00"), tf.int32)
    starts = tf.range(tf.maximum(n - 5, 1))
    windows = tf.gather(padded, starts[:, None] + tf.range(6)[None, :])
    found = tf.reduce_all(tf.equal(windows, tag[None, :]), axis=1)
    tiff = tf.cast(tf.argmax(tf.cast(found, tf.int32)), tf.int32) + 6
    little = tf.equal(tf.gather(padded, tiff), 0x49) & tf.equal(tf.gather(padded, tiff + 1), 0x49)
    big = tf.equal(tf.gather(padded, tiff), 0x4D) & tf.equal(tf.gather(padded, tiff + 1), 0x4D)

    def number(offset: tf.Tensor, width: int) -> tf.Tensor:
        at = tf.clip_by_value(tiff + offset, 0, n + 15)
        parts = tf.gather(padded, tf.clip_by_value(at[..., None] + tf.range(width), 0, n + 15))
        weights = 256 ** tf.range(width)
        return tf.reduce_sum(parts * tf.where(little, weights, tf.reverse(weights, [0])), -1)

    ifd = number(tf.constant(4), 4)
    count = number(ifd, 2)
    entries = ifd + 2 + 12 * tf.range(64)
    valid = (tf.range(64) < count) & (tiff + entries + 12 <= n)
    hit = valid & tf.equal(number(entries, 2), 0x0112) & tf.equal(number(entries + 2, 2), 3)
    value = number(tf.gather(entries, tf.argmax(tf.cast(hit, tf.int32), output_type=tf.int32)) + 8, 2)
    ok = tf.reduce_any(found) & (little | big) & tf.reduce_any(hit) & (value >= 1) & (value <= 8)
    return tf.where(ok, value, 1)


_HEX = [f"{b:02x}" for b in range(256)]


def first_bytes(data: tf.Tensor, count: int = 8) -> tf.Tensor:
    """The first ``count`` bytes of a string in hex, for an error message: raw bytes would make
    the message invalid UTF-8, which the client then fails to decode."""
    head = tf.io.decode_raw(tf.strings.substr(data, 0, count), tf.uint8)
    return tf.strings.reduce_join(tf.gather(tf.constant(_HEX), tf.cast(head, tf.int32)))


def squares_from_bytes(images_bytes: tf.Tensor, size: int, channels: int) -> tf.Tensor:
    """A batch of encoded images as the model's uint8 squares (:func:`square_from_bytes`), decoded
    in parallel.

    Raises:
        tf.errors.InvalidArgumentError: naming the batch index of the first string that is not a
            supported image or fails to decode (corrupt or truncated), with its first bytes. A
            decoder's own error would not say which image of the batch it was.
    """
    count = tf.shape(images_bytes)[0]
    decoded = pipeline.fixed_parallelism(
        tf.data.Dataset.from_tensor_slices((tf.range(count), images_bytes))
        .map(lambda i, data: (i, square_from_bytes(data, size, channels)), num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors(log_warning=False)
        .batch(tf.cast(tf.maximum(count, 1), tf.int64))
    )
    # The batch of every image that decoded, or an empty one when none did.
    empty = tf.data.Dataset.from_tensors((tf.zeros([0], tf.int32), tf.zeros([0, size, size, channels], tf.uint8)))
    index, squares = decoded.concatenate(empty).take(1).get_single_element()
    decoded_at = tf.scatter_nd(index[:, None], tf.ones_like(index), [count])
    first_bad = tf.cast(tf.argmin(tf.concat([decoded_at, [0]], 0)), tf.int32)  # == count when none
    check = tf.debugging.Assert(
        tf.equal(tf.shape(index)[0], count),
        ["serve_bytes: image", first_bad, "of the batch cannot be decoded: it is not a JPEG, PNG, GIF, BMP or WebP "
         "file, or it is corrupt or truncated (its first bytes, hex:",
         first_bytes(tf.concat([images_bytes, [""]], 0)[first_bad]), ")"],
    )
    with tf.control_dependencies([check]):
        squares = tf.identity(squares)
    squares.set_shape([None, size, size, channels])
    return squares


def square_from_bytes(data: tf.Tensor, size: int, channels: int) -> tf.Tensor:
    """Encoded image bytes as the model's uint8 square, as :func:`pipeline.decode_files` makes it
    from a file: decoder by format, JPEG at a reduced DCT scale, crop and resize (antialiased
    when the scale left over 2x), EXIF orientation, channels.

    Raises:
        tf.errors.InvalidArgumentError: the bytes are not a supported image (in a batch,
            :func:`squares_from_bytes` names its index).
    """
    code = format_code(data)
    # BMP: the probe wants the 26-byte header too.
    code = tf.where(tf.equal(code, FORMAT_CODES["bmp"]) & (tf.strings.length(data) < 26), 0, code)
    check = tf.debugging.Assert(
        code > 0,
        ["serve_bytes: the bytes are not a JPEG, PNG, GIF, BMP or WebP file (their first bytes, hex:",
         first_bytes(data), ")"],
    )
    with tf.control_dependencies([check]):
        code = tf.identity(code)
    is_jpeg = tf.equal(code, FORMAT_CODES["jpeg"])
    image = pipeline.decode_bytes(data, code, size)
    # The probe's choices: a JPEG decoded at the largest DCT ratio antialiases only at ratio 8.
    shape = tf.cond(is_jpeg, lambda: tf.image.extract_jpeg_shape(data)[:2], lambda: tf.zeros([2], tf.int32))
    short = tf.minimum(shape[0], shape[1])
    ratio8 = tf.reduce_all(-(-short // 8) >= size)
    mode = tf.where(is_jpeg, tf.where(ratio8, 1, 2), 0)
    image = tf.switch_case(
        mode,
        [
            lambda: pipeline.square_resize(image, size),
            lambda: pipeline.square_resize(image, size, True),
            lambda: pipeline.square_resize(image, size, False),
        ],
    )
    orientation = tf.cond(is_jpeg, lambda: exif_orientation(data), lambda: tf.constant(1))
    image = pipeline.apply_orientation(image, orientation)
    image = pipeline.to_channels(image, channels)
    image.set_shape([size, size, channels])
    return image
