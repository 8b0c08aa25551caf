"""tf.data pipelines: decode at reduced size, EXIF orientation, resize, grey, cache, shuffle,
batch, augment, prefetch.

:func:`decode_files` is the one road from image files to tensors: training, prediction,
evaluation and feature extraction all take it.

The decode is the hot path. Big JPEGs are decoded with DCT scaling (``ratio`` 2, 4 or 8: the
decoder skips most of the work) to the smallest size that still covers the target; the decoded,
resized uint8 images are cached (in memory, or on disk for datasets larger than memory) so every
epoch after the first costs only shuffling and batching, and the model is the bottleneck.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from transferkit.data.augment import STEPS as GEOMETRIC, RandomAffine
from transferkit.data.progress import ProgressBar
from transferkit.data.probe import Probe, probe_files
from transferkit.errors import ConfigError

AUTOTUNE = tf.data.AUTOTUNE
_RATIOS = (1, 2, 4, 8)
# Part of every disk cache key: bump it when what a cache entry holds, or what decode_files gives
# for the same file and settings (decoders, resizing, orientation, grey), changes: no cache made
# by older code is then read.
CACHE_VERSION = 2
# What `--augment` accepts: name -> (default strength, layer factory). The geometric ones mean
# what Keras' RandomFlip/Rotation/Zoom/Translation mean; build_augmentation fuses their runs.
AUGMENTATIONS = {
    "flip": ("horizontal", lambda v, s, size: RandomAffine(flip=v, seed=s)),
    "rotation": (0.05, lambda v, s, size: RandomAffine(rotation=float(v), seed=s)),
    "zoom": (0.1, lambda v, s, size: RandomAffine(zoom=float(v), seed=s)),
    "translation": (0.1, lambda v, s, size: RandomAffine(translation=float(v), seed=s)),
    "crop": (0.875, lambda v, s, size: _random_crop(float(v), s, size)),
    "contrast": (0.2, lambda v, s, size: keras.layers.RandomContrast(float(v), seed=s)),
    "brightness": (0.2, lambda v, s, size: keras.layers.RandomBrightness(float(v), seed=s)),
    "pad": (4, lambda v, s, size: _pad_crop(int(v), s, size)),
    "randaugment": ("", lambda v, s, size: keras.layers.RandAugment(value_range=(0, 255), seed=s)),
}
# Items that act on a whole batch and mix its labels (Keras' own layers, called on
# ``{"images", "labels"}`` with one-hot labels): name -> (default alpha, layer factory). They run
# after the per-image items, on training batches only.
MIXES = {
    "mixup": (0.2, lambda v, s: keras.layers.MixUp(alpha=float(v), seed=s)),
    "cutmix": (1.0, lambda v, s: keras.layers.CutMix(factor=float(v), seed=s)),
}
DEFAULT_AUGMENT = "flip,rotation,zoom"
PRESETS = {"cifar": "pad=4,flip"}
"""Named augmentations: ``cifar`` is the ResNet/WRN papers' 4-pixel zero pad, random crop, flip."""


def _pad_crop(pixels: int, seed: int, size: int | None) -> keras.Sequential:
    if size is None or pixels < 0:
        raise ConfigError(f"pad takes a number of pixels (0 or more), got {pixels}")
    return keras.Sequential(
        [keras.layers.ZeroPadding2D(pixels), keras.layers.RandomCrop(size, size, seed=seed)], name="pad_crop"
    )


def _random_crop(fraction: float, seed: int, size: int | None) -> keras.Sequential:
    if size is None or not 0.0 < fraction <= 1.0:
        raise ConfigError(f"crop takes a fraction of the image side in (0, 1], got {fraction}")
    side = max(1, int(round(size * fraction)))
    return keras.Sequential(
        [keras.layers.RandomCrop(side, side, seed=seed), keras.layers.Resizing(size, size)], name="crop"
    )


def parse_augment(spec: str | None) -> list[tuple[str, Any]]:
    """``"flip,rotation=0.1,crop=0.8"`` as ``[(name, value), ...]``; ``"none"`` or "" as ``[]``.

    Raises:
        ConfigError: an unknown augmentation or a value that is not a number.
    """
    if spec is None or spec.strip().lower() in ("", "none", "off"):
        return []
    spec = PRESETS.get(spec.strip().lower(), spec)
    out: list[tuple[str, Any]] = []
    for item in spec.split(","):
        name, _, value = item.strip().partition("=")
        name = name.strip().lower()
        if name not in AUGMENTATIONS and name not in MIXES:
            raise ConfigError(
                f"unknown augmentation {name!r}; choose from {', '.join([*AUGMENTATIONS, *MIXES])} "
                "(e.g. 'flip,rotation=0.1') or 'none'"
            )
        default = (AUGMENTATIONS.get(name) or MIXES[name])[0]
        if value and not isinstance(default, str):
            try:
                out.append((name, float(value)))
            except ValueError:
                raise ConfigError(f"augmentation {name} takes a number, got {value!r}") from None
            if name in MIXES and not out[-1][1] > 0:
                raise ConfigError(f"{name} takes a positive alpha (e.g. {name}={default}), got {value}")
        elif value and name == "randaugment":
            raise ConfigError(f"randaugment takes no value (Keras' RandAugment defaults), got {value!r}")
        else:
            out.append((name, value or default))
    return out


def _runs(items: list[tuple[str, Any]]) -> list[list[tuple[int, str, Any]]]:
    """``(index, name, value)`` grouped: each run of consecutive geometric items (a name at most
    once per run) together, every other item alone."""
    runs: list[list[tuple[int, str, Any]]] = []
    for i, (name, value) in enumerate(items):
        run = runs[-1] if runs else []
        if name in GEOMETRIC and run and run[0][1] in GEOMETRIC and name not in {n for _, n, _ in run}:
            run.append((i, name, value))
        else:
            runs.append([(i, name, value)])
    return runs


def build_augmentation(spec: str | None, seed: int = 0, image_size: int | None = None) -> keras.Sequential | None:
    """Preprocessing layers for ``spec`` (see :func:`parse_augment`); None when empty.

    Each run of consecutive geometric items (flip, rotation, zoom, translation) becomes one
    :class:`RandomAffine`, one resample instead of one per item; the others are Keras layers.
    """
    layers: list[keras.layers.Layer] = []
    for run in _runs([(n, v) for n, v in parse_augment(spec) if n not in MIXES]):
        first, name, value = run[0]
        if name in GEOMETRIC:
            steps = {n: v for _, n, v in run}
            layers.append(RandomAffine(**steps, order=tuple(steps), seed=seed + first))
        else:
            layers.append(AUGMENTATIONS[name][1](value, seed + first, image_size))
    return keras.Sequential(layers, name="augmentation") if layers else None


def build_mixing(spec: str | None, seed: int = 0) -> list[keras.layers.Layer]:
    """The batch-mixing layers of ``spec`` (``mixup``, ``cutmix``; see :data:`MIXES`), in order."""
    return [MIXES[name][1](value, seed + 1000 + i) for i, (name, value) in enumerate(parse_augment(spec)) if name in MIXES]


def default_augmentation(seed: int = 0) -> keras.Sequential:
    """Flip, small rotation and zoom: label-preserving for most photo datasets."""
    return build_augmentation(DEFAULT_AUGMENT, seed)  # type: ignore[return-value]


# EXIF orientation (index) -> (transpose, reverse rows, reverse columns), applied in that order.
# Plain tensor ops rather than tf.switch_case: a functional branch per image costs more than the
# whole flip.
_ORIENTATION_OPS = (
    (0, 0, 0), (0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 0, 0), (1, 0, 1), (1, 1, 1), (1, 1, 0)
)


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor | int) -> tf.Tensor:
    """Applies an EXIF orientation (1-8; 0 or 1: as stored) so the image is upright."""
    if isinstance(orientation, int):
        transpose, rows, cols = _ORIENTATION_OPS[min(max(orientation, 0), 8)]
        image = tf.image.transpose(image) if transpose else image
        axes = [a for a, flag in ((0, rows), (1, cols)) if flag]
        return tf.reverse(image, axes) if axes else image
    ops = tf.gather(tf.constant(_ORIENTATION_OPS, tf.int32), tf.clip_by_value(tf.cast(orientation, tf.int32), 0, 8))
    perm = tf.where(ops[0] > 0, tf.constant([1, 0, 2]), tf.constant([0, 1, 2]))
    image = tf.transpose(image, perm)
    axes = tf.boolean_mask(tf.constant([0, 1]), ops[1:] > 0)
    return tf.reverse(image, axes)


def jpeg_ratio(width: int, height: int, image_size: int) -> int:
    """The largest DCT scale-down (1, 2, 4, 8) whose short side still covers ``image_size``."""
    short = min(width, height)
    return max((r for r in _RATIOS if -(-short // r) >= image_size), default=1) if short else 1


def _decode_jpeg(data: tf.Tensor, image_size: int, ratio: int | None = None) -> tf.Tensor:
    """Decodes at the largest DCT scale-down whose short side still covers ``image_size``."""
    if ratio is not None:
        return tf.io.decode_jpeg(data, channels=3, ratio=ratio, dct_method="INTEGER_FAST")
    shape = tf.image.extract_jpeg_shape(data)
    short = tf.minimum(shape[0], shape[1])
    ratios = tf.constant(_RATIOS[1:])
    index = tf.reduce_sum(tf.cast((short + ratios - 1) // ratios >= image_size, tf.int32))
    return tf.switch_case(
        index,
        [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method="INTEGER_FAST") for r in _RATIOS],
    )


def over_white(rgba: tf.Tensor) -> tf.Tensor:
    """Composites RGBA onto white (transparent backgrounds are usually meant as paper, not black)."""
    rgb = tf.cast(rgba[..., :3], tf.float32)
    alpha = tf.cast(rgba[..., 3:], tf.float32) / 255.0
    return tf.cast(tf.round(rgb * alpha + 255.0 * (1.0 - alpha)), tf.uint8)


def _decode_any(data: tf.Tensor) -> tf.Tensor:
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def decode_bytes(
    data: tf.Tensor, format_code: tf.Tensor | int, image_size: int, ratio: int | None = None
) -> tf.Tensor:
    """Decodes encoded image bytes as ``H x W x 3`` uint8 RGB.

    ``format_code`` is :data:`transferkit.data.probe.FORMAT_CODES` (0: sniff). Grayscale, CMYK
    and 16-bit become 8-bit RGB; alpha is composited onto white; a GIF gives its first frame.
    A Python int ``format_code`` (and JPEG ``ratio``) builds only the one decoder needed: no
    per-image branching, which costs as much as a small decode.
    """

    def jpeg() -> tf.Tensor:
        return _decode_jpeg(data, image_size, ratio)

    def sniff() -> tf.Tensor:
        return tf.cond(tf.io.is_jpeg(data), jpeg, lambda: _decode_any(data))

    def with_alpha() -> tf.Tensor:  # PNG and BMP
        return over_white(tf.io.decode_image(data, channels=4, expand_animations=False))

    def webp() -> tf.Tensor:  # first frame; 3 or 4 channels as stored: pad an opaque alpha
        image = tf.io.decode_webp(data)[0]
        opaque = tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), tf.constant(255, tf.uint8))
        return over_white(tf.concat([image, opaque], -1)[..., :4])

    # Codes: 0 sniff, 1 jpeg, 2 png, 3 gif, 4 bmp, 5 webp (probe.FORMAT_CODES).
    branches = [sniff, jpeg, with_alpha, lambda: _decode_any(data), with_alpha, webp]
    if isinstance(format_code, int):
        image = branches[format_code if 0 <= format_code < len(branches) else 0]()
    else:
        image = tf.switch_case(tf.cast(format_code, tf.int32), branches)
    image.set_shape([None, None, 3])
    return image


def square_resize(image: tf.Tensor, image_size: int, antialias: bool | None = None) -> tf.Tensor:
    """Keeps the largest centred square (no distortion), resized, as uint8.

    ``antialias`` None antialiases reductions of more than 2x (decided per image).
    """
    h, w, _ = tf.unstack(tf.shape(image), num=3)
    side = tf.minimum(h, w)
    # A plain slice: tf.image.crop_to_bounding_box adds some 60 checking ops, traced per decoder
    # and run per image.
    image = tf.slice(image, tf.stack([(h - side) // 2, (w - side) // 2, 0]), tf.stack([side, side, -1]))
    # Antialiasing only pays for itself on big reductions; a reduced-size JPEG decode leaves
    # less than 2x to go, where bilinear is as good and half the cost.
    if antialias is not None:
        image = tf.image.resize(image, (image_size, image_size), antialias=antialias)
    else:
        image = tf.cond(
            side > 2 * image_size,
            lambda: tf.image.resize(image, (image_size, image_size), antialias=True),
            lambda: tf.image.resize(image, (image_size, image_size)),
        )
    return tf.saturate_cast(tf.round(image), tf.uint8)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """An RGB uint8 image with ``channels`` channels: 3 as is, 1 grey (ITU-R 601 luma, rounded).

    The only grey conversion: every road to tensors (files, tensorflow-datasets) ends here.
    """
    if channels == 3:
        return image
    if channels != 1:
        raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    grey = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
    return tf.saturate_cast(tf.round(grey), tf.uint8)


def load_image(
    path: tf.Tensor,
    image_size: int,
    format_code: tf.Tensor | int = 0,
    orientation: tf.Tensor | int = 1,
    ratio: int | None = None,
    channels: int = 3,
) -> tf.Tensor:
    """Reads an image file as an upright ``image_size x image_size x channels`` uint8 square.

    Python ints for ``format_code``, ``orientation`` and ``ratio`` (known from the probe) give
    a branch-free graph; tensors decide per image.
    """
    antialias = None
    if isinstance(format_code, int) and format_code == 1 and ratio is not None:
        antialias = ratio == _RATIOS[-1]  # below the largest ratio, less than 2x is left
    image = decode_bytes(tf.io.read_file(path), format_code, image_size, ratio)
    image = square_resize(image, image_size, antialias)
    # Orientation after the square crop and resize: flips and quarter turns commute with both.
    image = apply_orientation(image, orientation)
    image = to_channels(image, channels)
    image.set_shape([image_size, image_size, channels])
    return image


Group = tuple[int, int | None, int | None]
"""A decoder group of :func:`decode_files`: (format code, JPEG DCT ratio or None, the orientation
of every file in it or None for each file's own)."""


@functools.lru_cache(maxsize=64)
def _loader(image_size: int, channels: int, groups: tuple[Group, ...]) -> Any:
    """:func:`load_image` for the files of :func:`decode_files`, ``groups[group]`` choosing each
    file's branch-free decoder, traced once per process for a set of groups.

    One function for all the groups, in one map: tf.data sets up every map's function each time
    an iterator starts, about 20 ms a function, and wraps each map's function when a dataset is
    made, about 12 ms; a map per group cost that once per group at every prediction or
    evaluation call. The choice between groups is a ``tf.switch_case`` that tf.data lowers into
    the function's graph, with no cost per image that could be measured."""

    @tf.function(
        input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)],
        autograph=False,
    )
    def load(path: tf.Tensor, orientation: tf.Tensor, group: tf.Tensor) -> tf.Tensor:
        branches = [
            lambda fmt=fmt, ratio=ratio, fixed=fixed: load_image(
                path, image_size, fmt, orientation if fixed is None else fixed, ratio, channels
            )
            for fmt, ratio, fixed in groups
        ]
        return branches[0]() if len(branches) == 1 else tf.switch_case(group, branches)

    return load


def fixed_parallelism(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` with tf.data's autotuning off, so ``num_parallel_calls=AUTOTUNE`` means one call per
    core (and ``prefetch(AUTOTUNE)`` the prefetch buffer's own sizing), which is what the tuner
    settles on for decoding anyway. Every dataset this package iterates goes through here.

    Why: with autotuning on (TensorFlow 2.21), deleting an iterator waits for the tuner's
    background thread to finish its current sleep, and the sleeps double over an iterator's life:
    an iterator that ran for 10 s took up to 10 s more to delete, which happens at the end of
    every predict call and every Keras epoch and validation pass (``benchmarks/autotune_teardown.py``:
    a 6-epoch fit 1.16x slower with it on 2 cores; ``transferkit predict`` on 245 photos lost
    0.3-2.1 s in about half its calls). Datasets built on this one inherit the option.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _map(ds: tf.data.Dataset, fn: Any, **kwargs: Any) -> tf.data.Dataset:
    """``ds.map(fn)`` without AutoGraph: our functions branch only on Python values, and
    AutoGraph's source rewrite of the decoders costs over a second per process."""
    return ds.map(tf.autograph.experimental.do_not_convert(fn), **kwargs)


def decode_files(
    files: Sequence[str],
    image_size: int,
    channels: int = 3,
    cache: str | None = None,
    *,
    probes: Sequence[Probe] | None = None,
    batch_size: int | None = None,
) -> tf.data.Dataset:
    """The one road from image files to tensors: ``(index, uint8 image)`` per file, in order.

    Training and validation (:func:`transferkit.data.load_data`), prediction and evaluation
    (``predict_files``) and feature extraction (``file_features``) all decode here, so a file
    gives the same tensor whoever asks. The steps: the header probe (format, JPEG size, EXIF
    orientation; pass ``probes`` when already done), then files grouped by (format, JPEG DCT
    ratio), each group with its own branch-free decoder (orientation too when the whole group
    has one), one parallel map choosing each file's (:func:`_loader`); centre square crop and
    resize; orientation; ``channels`` (:func:`to_channels`).

    ``index`` is the file's position in ``files``. A file whose probe found a problem, or that
    fails to decode, is missing from the output (it never stops an epoch): :func:`fill_cache`
    finds them. Labels are not part of it: callers attach them by index after the cache
    (:func:`batched`), so a cached image never carries a stale label.

    Args:
        files: Image paths.
        image_size: Side of the square output.
        channels: 3 (RGB) or 1 (grey).
        cache: ``"memory"``, a file prefix for an on-disk cache, or None.
        probes: :func:`transferkit.data.probe.probe_files` of ``files``; probed here when None.
        batch_size: Batches of ``(indices, images)`` after the cache when given.
    """
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    probes = list(probes) if probes is not None else probe_files(files)
    # Not by orientation too: a per-image flip is cheap, and each group is a branch to trace.
    members: dict[tuple[int, int | None], list[int]] = defaultdict(list)
    for i, p in enumerate(probes):
        if not p.problem:
            members[(p.format_code, jpeg_ratio(p.width, p.height, image_size) if p.format_code == 1 else None)].append(i)
    fixed = {}  # the orientation of every file of a group, None for each file's own
    for key, rows in members.items():
        turns = {probes[i].orientation for i in rows}
        fixed[key] = turns.pop() if len(turns) == 1 else None
    # Sorted, so a set of groups is traced once whatever order the files come in.
    groups: list[Group] = sorted(
        ((*key, fixed[key]) for key in members), key=lambda g: tuple(-1 if v is None else v for v in g)
    )
    position = {g[:2]: n for n, g in enumerate(groups)}
    group_of = {i: position[key] for key, rows in members.items() for i in rows}
    order = sorted(group_of)
    if order:
        load = _loader(image_size, channels, tuple(groups))
        ds = tf.data.Dataset.from_tensor_slices(
            (
                tf.constant(order, tf.int32),
                tf.constant([files[i] for i in order], tf.string),
                tf.constant([probes[i].orientation for i in order], tf.int32),
                tf.constant([group_of[i] for i in order], tf.int32),
            )
        )
        ds = _map(ds, lambda i, p, o, g: (i, load(p, o, g)), num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        ds = tf.data.Dataset.from_tensor_slices(
            (tf.zeros([0], tf.int32), tf.zeros([0, image_size, image_size, channels], tf.uint8))
        )
    ds = _cached(fixed_parallelism(ds.ignore_errors()), cache)
    return ds if batch_size is None else ds.batch(batch_size)


def decode_problem(file: str, image_size: int, probe: Probe, channels: int = 3) -> str:
    """Why :func:`decode_files` left ``file`` out: its decoder's error, run again on it alone."""
    ratio = jpeg_ratio(probe.width, probe.height, image_size) if probe.format_code == 1 else None
    try:
        load_image(tf.constant(file), image_size, probe.format_code, probe.orientation, ratio, channels)
    except (tf.errors.OpError, ValueError) as err:
        message = (getattr(err, "message", None) or str(err)).strip().splitlines()
        return f"cannot be decoded ({message[0] if message else type(err).__name__})"
    return "cannot be decoded (failed in the decoding pass)"


def decoded_tensor_dataset(
    examples: tf.data.Dataset, image_size: int, decode: Any, channels: int = 3, cache: str | None = "memory"
) -> tf.data.Dataset:
    """Like :func:`decode_files` for ``(index, encoded image)`` elements of tensorflow-datasets:
    ``decode`` (the dataset's own image decoder), then the same square resize and
    :func:`to_channels`."""
    ds = _map(
        examples,
        lambda i, x: (tf.cast(i, tf.int32), square_image(decode(x), image_size, channels)),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    ).ignore_errors()
    return _cached(fixed_parallelism(ds), cache)


def square_image(image: Any, image_size: int, channels: int) -> tf.Tensor:
    """A decoded image (``(height, width, 1 or 3)``, 0-255, any size and dtype) as training sees
    it: the centre square resized to ``image_size`` (:func:`square_resize`), in ``channels``."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    image = square_resize(tf.cast(image, tf.float32), image_size)
    image = to_channels(image, channels)
    image.set_shape([image_size, image_size, channels])
    return image


def _cached(ds: tf.data.Dataset, cache: str | None) -> tf.data.Dataset:
    if cache == "memory":
        return ds.cache()
    if cache:
        os.makedirs(os.path.dirname(cache) or ".", exist_ok=True)
        return ds.cache(cache)
    return ds


def fill_cache(ds: tf.data.Dataset, total: int = 0) -> list[int]:
    """One full pass over a :func:`decode_files` dataset, filling its cache (if any): the
    indices that decoded. With ``total`` (the images in it), a progress bar on a terminal."""
    done: list[int] = []
    with ProgressBar(total, "decoding") as bar:
        for i in _map(ds, lambda i, x: i).batch(256).prefetch(2):
            done.extend(i.numpy().tolist())
            bar.add(int(i.shape[0]))
    return done


def batched(
    decoded: tf.data.Dataset,
    labels: Sequence[int],
    batch_size: int,
    training: bool,
    seed: int = 0,
    augmentation: Any = None,
    shuffle_buffer: int = 1024,
    count: int | None = None,
    num_classes: int | None = None,
    mixing: Sequence[Any] = (),
) -> tf.data.Dataset:
    """Batches of ``(float32 0-255 images, int32 labels)`` from a :func:`decode_files` dataset;
    ``labels[index]`` is each image's label.

    Training data is reshuffled every epoch (seeded) and augmented after the cache; validation
    and test data never. ``count``, the number of images known to decode, gives the dataset its
    length (undecodable files are filtered out, which leaves it unknown), so Keras shows the
    steps of every epoch.

    With ``num_classes`` the labels are one-hot float32 rows (every split alike, so one loss and
    one accuracy fit them all), and ``mixing`` (:func:`build_mixing`) mixes training batches,
    images and labels, after the per-image ``augmentation``.
    """
    table = tf.constant(list(labels) or [0], tf.int32)
    ds = _map(decoded, lambda i, x: (x, tf.gather(table, i)))
    if training:
        ds = ds.shuffle(max(shuffle_buffer, 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if count is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-count // batch_size)))
    ds = _map(ds, lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if training and augmentation is not None:
        ds = ds.map(lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=AUTOTUNE)
    if num_classes is not None:
        ds = ds.map(lambda x, y: (x, tf.one_hot(y, num_classes, dtype=tf.float32)))
    if training and mixing:
        ds = ds.map(lambda x, y: _mixed(mixing, x, y), num_parallel_calls=AUTOTUNE)
    return fixed_parallelism(ds.prefetch(AUTOTUNE))


def _mixed(layers: Sequence[Any], images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    for layer in layers:
        out = layer({"images": images, "labels": labels}, training=True)
        images, labels = out["images"], out["labels"]
    return images, labels
