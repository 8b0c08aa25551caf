"""The one road from a model name to a model: lookup, image-size check, channel adaptation,
pretrained weights and the shared head.

Every command, the tuner, the recipes and the Python API build models here.
:func:`create_backbone` wraps a registered builder as ``raw 0-255 image -> Preprocess -> feature
map``; :func:`create_model` puts the one shared head (:mod:`transferkit.models.head`) on top;
:func:`build_model` is what training uses (a new head on a base from random init, a pretrained
tag or a file, for RGB or grey images, or on the base of an earlier model, :func:`base_of`);
:func:`pretrained_classifier` is the published classifier unchanged. Each builds its model first,
then loads its weights through the one weights road, :func:`transferkit.models.weights.load_into`.
"""

from __future__ import annotations

import os
from typing import Any

import keras

from transferkit.errors import ConfigError, WeightsError
from transferkit.models import weights as weights_lib
from transferkit.models.head import POOL_LAYERS, classification_head, is_head_layer
from transferkit.models.layers import PREPROCESSING_MODES, Preprocess
from transferkit.models.registry import ModelInfo, check_input_shape, get_model_info


def default_image_size(base: str, weights: str | None) -> int:
    """The input side of ``base``: its pretrained weights' resolution, else the variant's default."""
    info = get_model_info(base)
    if weights_lib.is_tag(weights):
        return weights_lib.get_record(info.name, weights).input_size  # type: ignore[arg-type]
    return info.input_shape[0]


def checked_image_size(base: str, weights: str | None, image_size: int | None) -> int:
    """The input side a run uses, checked against what the architecture can take."""
    info = get_model_info(base)
    size = image_size or default_image_size(info.name, weights)
    check_input_shape(info, (size, size, 3))
    return size


# The builder argument of stochastic depth, by family: a per-example Dropout of each residual
# branch, with no weights, so pretrained weights still fit a model built with it.
DROP_PATH_ARGS = {"resnet": "drop_path", "wide_resnet": "drop_path", "efficientnet": "drop_connect_rate"}


def drop_path_option(base: str, rate: float | None) -> dict[str, float]:
    """The builder argument that sets ``base``'s stochastic depth to ``rate`` (the last block's);
    none for 0 or None.

    Raises:
        ConfigError: a rate outside [0, 1), or a family without residual blocks.
    """
    if not rate:
        return {}
    info = get_model_info(base)
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"drop_path must be in [0, 1), got {rate}")
    if info.family not in DROP_PATH_ARGS:
        raise ConfigError(
            f"{info.name} has no residual blocks for drop_path to drop (families that have: "
            f"{', '.join(DROP_PATH_ARGS)}); use dropout instead, or drop_path 0"
        )
    return {DROP_PATH_ARGS[info.family]: float(rate)}


Weights = str | os.PathLike[str] | weights_lib.PretrainedWeights | None
"""What ``weights=`` takes: a tag, a record, a file path, or None for random init."""


def _weights_source(info: ModelInfo, weights: Any) -> Any:
    """The record of a tag (or the record given), the path of a file, or None."""
    if isinstance(weights, weights_lib.PretrainedWeights) and weights.model != info.name:
        raise WeightsError(
            f"the {weights.tag!r} weights record is {weights.model}'s, not {info.name}'s; pass "
            f"the tag {weights.tag!r} instead"
        )
    if weights is None or isinstance(weights, weights_lib.PretrainedWeights):
        return weights
    if weights_lib.is_tag(weights):
        return weights_lib.get_record(info.name, weights)
    return weights


def _backbone(
    info: ModelInfo, source: Any, input_shape: tuple[int, ...] | None, overrides: dict[str, Any]
) -> keras.Model:
    """The backbone of ``info``, preprocessing as a record says, with no weights loaded yet."""
    record = source if isinstance(source, weights_lib.PretrainedWeights) else None
    if record is not None and overrides:
        changed = {
            k: v for k, v in overrides.items()
            if info.kwargs.get(k, object()) != v and k not in DROP_PATH_ARGS.values()
        }
        if changed:
            raise ConfigError(
                f"pretrained {record.tag!r} weights fit {info.name} as published; the overrides "
                f"{sorted(changed)} change the architecture. Drop them or use weights=None"
            )
    shape = check_input_shape(info, input_shape)
    if record is not None and shape[2] != 3:
        raise ConfigError(
            f"{info.name} {record.tag} weights take 3-channel RGB input, got {shape[2]} channels"
        )
    mode = record.preprocessing if record is not None else info.preprocessing
    inputs = keras.Input(shape=shape, name="image")
    x = Preprocess(mode, name="preprocess")(inputs)
    features = info.builder(x, **{**info.kwargs, **overrides})
    return keras.Model(inputs, features, name=info.name)


def create_backbone(
    name: str,
    weights: Weights = None,
    input_shape: tuple[int, ...] | None = None,
    **overrides: Any,
) -> keras.Model:
    """Builds a headless backbone: raw 0-255 RGB in, 4-D feature map out.

    Args:
        name: Registry name or alias (see :func:`list_models`).
        weights: ``None`` (random init), a pretrained tag such as ``"imagenet"`` (or its
            :class:`~transferkit.models.weights.PretrainedWeights` record), or the path of a
            weights file (``.keras``, ``.weights.h5`` or legacy ``.h5``, with or without a
            classifier top: the top is left out). Loaded by
            :func:`~transferkit.models.weights.load_into`.
        input_shape: ``(height, width, channels)``; the variant's default when omitted.
        **overrides: Builder arguments that change the variant (e.g. ``alpha=0.5``).

    Returns:
        A functional ``keras.Model`` whose first layer after the input is ``preprocess``.
    """
    info = get_model_info(name)
    source = _weights_source(info, weights)
    backbone = _backbone(info, source, input_shape, overrides)
    if source is not None:
        weights_lib.load_into(backbone, source)
    return backbone


def create_model(
    name: str,
    num_classes: int | None = None,
    weights: Weights = None,
    input_shape: tuple[int, ...] | None = None,
    *,
    pooling: str | None = None,
    hidden_units: tuple[int, ...] | None = None,
    dropout: float | None = None,
    activation: str | None = "softmax",
    aux_outputs: bool = False,
    backbone: keras.Model | None = None,
    **overrides: Any,
) -> keras.Model:
    """Builds a classifier: the named backbone under the one shared head.

    Args:
        name: Registry name or alias.
        num_classes: Outputs of the ``predictions`` layer; 1000 (ImageNet) when omitted.
        weights: ``None``, a pretrained tag (``"imagenet"``) or its record, or the path of a
            weights file, headless or of a whole classifier (see
            :func:`~transferkit.models.weights.load_into`). A file's top loads when it has
            ``num_classes`` classes; with another number of classes the base (and any hidden
            head layers) load and ``predictions`` starts from new initial values.
        input_shape: ``(height, width, channels)``; the variant's default when omitted.
        pooling: ``"avg"``, ``"max"`` or ``"flatten"``; the family's default when omitted.
        hidden_units: Hidden Dense layers of the head (VGG/AlexNet style FC layers).
        dropout: Dropout rate before ``predictions`` (and after each hidden layer).
        activation: Activation of ``predictions`` (``"softmax"``, ``"sigmoid"``, ``None``).
        aux_outputs: Add training-time auxiliary classifiers where the family has them; the
            model's outputs are then ``[predictions, aux...]`` and its attribute
            ``loss_weights_of_outputs`` holds their loss weights (``model.compile(loss_weights=...)``).
        backbone: A backbone of ``name`` built before (:func:`create_backbone`, :func:`base_of`)
            to put the head on instead of building one; its layers are shared, weights included.
        **overrides: Builder arguments (see the family's docstring).
    """
    info = get_model_info(name)
    if num_classes is None:
        num_classes = info.paper_classes
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    source = _weights_source(info, weights)
    if backbone is None:
        backbone = _backbone(info, source, input_shape, overrides)
    elif backbone.name != info.name or weights is not None or overrides:
        raise ConfigError(
            f"a shared backbone comes with its architecture and weights: got {backbone.name}'s "
            f"for {info.name}, with weights {weights!r} and overrides {sorted(overrides)}"
        )
    head = dict(info.head({**info.kwargs, **overrides}) if callable(info.head) else info.head)
    for key, value in (("pooling", pooling), ("hidden_units", hidden_units), ("dropout", dropout)):
        if value is not None:
            head[key] = value
    outputs = classification_head(backbone.output, num_classes, activation=activation, **head)
    if aux_outputs:
        if info.aux_heads is None:
            raise ConfigError(f"{info.name} has no auxiliary classifiers; drop aux_outputs")
        heads = info.aux_heads(backbone, num_classes)
        outputs = [outputs] + [out for out, _ in heads]
    model = keras.Model(backbone.input, outputs, name=info.name)
    if aux_outputs:
        model.loss_weights_of_outputs = (1.0,) + tuple(weight for _, weight in heads)
    if source is not None:
        weights_lib.load_into(model, source)
    return model


def build_model(
    base: str,
    num_classes: int,
    weights: Weights = None,
    image_size: int | None = None,
    channels: int | None = None,
    *,
    backbone: keras.Model | None = None,
    **head: Any,
) -> keras.Model:
    """A classifier with a new head on a base from random init, a pretrained tag or a file.

    The weights load as :func:`create_model` loads them: a headless file or tag into the base, a
    whole classifier's file with its top when it has ``num_classes`` classes (otherwise all but
    ``predictions``). ``channels=1`` adapts 3-channel weights with :func:`adapt_input_channels`.

    Args:
        base: Registry name.
        num_classes: Outputs of the new ``predictions`` layer.
        weights: None, a tag (``"imagenet"``) or a path.
        image_size: Square input side; the variant's default when None.
        channels: 3 (RGB) or 1 (grey); the variant's default when None.
        backbone: The base of a model this function built before for the same ``base``,
            ``weights``, size and channels (:func:`base_of`): the new head goes on it, its
            layers shared rather than built and loaded again. For a base that stays frozen,
            such as the trials of a head search; training it trains every model sharing it.
        **head: ``pooling``, ``hidden_units``, ``dropout`` of the shared head; with
            ``weights=None`` also builder arguments of the family (``alpha=0.5``).
    """
    info = get_model_info(base)
    size = image_size or info.input_shape[0]
    channels = channels or info.input_shape[2]
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    if backbone is not None:
        if tuple(backbone.input_shape[1:]) != (size, size, channels):
            raise ConfigError(
                f"the shared backbone takes {tuple(backbone.input_shape[1:])} images, not "
                f"{(size, size, channels)}"
            )
        return create_model(base, num_classes, None, (size, size, channels), backbone=backbone, **head)
    if channels == 1 and info.input_shape[2] == 3 and weights is not None:
        rgb = build_model(base, num_classes, weights, size, 3, **head)
        mode = rgb.get_layer("preprocess").mode
        if mode in ("torch", "caffe"):
            raise ConfigError(
                f"{base} weights expect per-channel {mode!r} preprocessing, which has no grey form; "
                "train on 3-channel images (grey images are read as RGB by default)"
            )
        grey = create_model(base, num_classes, None, (size, size, 1), **head)
        set_preprocessing(grey, rgb.get_layer("preprocess").mode)
        adapt_input_channels(rgb, grey)
        return grey
    return create_model(base, num_classes, weights, (size, size, channels), **head)


def inference_model(model: keras.Model) -> keras.Model:
    """``model`` with only its ``predictions`` output (weights shared): what is saved and
    exported of a model trained with auxiliary classifiers; ``model`` itself when it has one output."""
    if not isinstance(model.output, (list, tuple)):
        return model
    return keras.Model(model.input, model.get_layer("predictions").output, name=model.name)


def base_of(model: keras.Model) -> keras.Model:
    """The backbone of a classifier built here: image in, the feature map its head pools out;
    it shares its layers with ``model`` (see ``build_model(backbone=...)``)."""
    for layer in model.layers:
        if layer.name in POOL_LAYERS:
            return keras.Model(model.input, layer.input, name=model.name)
    raise ConfigError(f"{model.name} has no shared head (no {' or '.join(POOL_LAYERS)} layer) to cut it at")


def set_preprocessing(model: keras.Model, mode: str) -> None:
    """Sets the mode of the model's ``preprocess`` layer (before the model is first run)."""
    if mode not in PREPROCESSING_MODES:
        raise ConfigError(f"unknown preprocessing mode {mode!r}")
    model.get_layer("preprocess").mode = mode


def first_conv(model: keras.Model) -> keras.layers.Layer:
    """The first base layer with a 4-D kernel (the convolution that sees the image)."""
    for layer in model.layers:
        if is_head_layer(layer):
            continue
        kernel = [w for w in layer.weights if len(w.shape) == 4]
        if kernel:
            return layer
    raise ConfigError(f"{model.name} has no convolution to adapt to other input channels")


def adapt_input_channels(source: keras.Model, target: keras.Model) -> None:
    """Copies the weights of ``source`` (3-channel RGB) into ``target`` (1-channel), by layer name.

    The first convolution's kernel is summed over its RGB input axis: a grey image ``g`` fed as
    ``(g, g, g)`` gives ``sum_c K_c * g``, so the 1-channel network computes what the RGB network
    computes on the grey image repeated three times. That holds for the ``tf``, ``unit`` and
    ``none`` preprocessing modes, which treat every channel alike; :func:`build_model` refuses
    one channel with the per-channel ``torch`` and ``caffe`` modes. Other per-channel weights
    before that convolution (a stem normalization) are averaged.
    """
    conv = first_conv(source).name
    seen_conv = False
    src = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        other = src.get(layer.name)
        if other is None:
            raise WeightsError(f"{source.name} has no layer {layer.name!r} to copy into {target.name}")
        values = []
        for mine, theirs in zip(layer.weights, other.get_weights()):
            if tuple(mine.shape) != theirs.shape:
                if layer.name == conv and len(theirs.shape) == 4:
                    theirs = theirs.sum(axis=2, keepdims=True)
                elif not seen_conv and theirs.shape[-1:] == (3,):
                    theirs = theirs.mean(axis=-1, keepdims=True)
            if tuple(mine.shape) != theirs.shape:
                raise WeightsError(
                    f"layer {layer.name!r} has weights {theirs.shape} in {source.name} but "
                    f"{tuple(mine.shape)} in {target.name}"
                )
            values.append(theirs)
        layer.set_weights(values)
        seen_conv = seen_conv or layer.name == conv


def pretrained_classifier(model: str, tag: str = "imagenet") -> keras.Model:
    """The published classifier, unchanged: our backbone and shared head with the top file loaded.

    The top files are not bundled; the first use downloads one (or finds it in
    ``$KERAS_HOME/models``), like ``keras.applications`` with ``include_top=True``.
    """
    record = weights_lib.top_record(get_model_info(model).name, tag)
    size = record.input_size
    return create_model(model, record.num_classes, record, (size, size, 3))
