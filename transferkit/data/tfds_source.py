"""tensorflow-datasets as a source (``--data tfds:NAME``), through tfds' own download and cache."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from transferkit.errors import DataError

PREFIX = "tfds:"


def is_tfds(source: object) -> bool:
    return str(source).startswith(PREFIX)


def parse_split_map(spec: str | None) -> dict[str, str]:
    """``"train=train[:90%],val=train[90%:],test=test"`` as a dict; keys train, val, test."""
    if not spec:
        return {}
    out: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = {"validation": "val"}.get(key.strip(), key.strip())
        if not sep or key not in ("train", "val", "test") or not value.strip():
            raise DataError(
                f"bad tfds split mapping {item!r}; write e.g. 'train=train,val=validation,test=test' "
                "(any tfds split expression on the right)"
            )
        out[key] = value.strip()
    return out


@dataclass
class TfdsSource:
    """A prepared tensorflow-datasets dataset and the tfds splits behind train/val/test.

    ``splits`` has no ``"val"`` when the dataset has no validation split (and none was mapped):
    validation is then carved out of ``train`` by :func:`transferkit.data.load_data`.
    """

    name: str
    builder: Any
    splits: dict[str, str]
    class_names: tuple[str, ...]
    image_key: str
    label_key: str

    def dataset(self, split: str) -> Any:
        """``(uint8 image, label)`` pairs of one of our splits (tfds decodes the images)."""
        ds = self.builder.as_dataset(split=self.splits[split], shuffle_files=False)
        return ds.map(lambda ex: (ex[self.image_key], ex[self.label_key]))

    def examples(self, split: str) -> Any:
        """``(encoded image, label)`` pairs of one of our splits, in a fixed order: no image is
        decoded (:meth:`decode_image` does that), so labels are cheap to read and examples cheap
        to select before decoding."""
        import tensorflow_datasets as tfds

        ds = self.builder.as_dataset(
            split=self.splits[split], shuffle_files=False, decoders={self.image_key: tfds.decode.SkipDecoding()}
        )
        return ds.map(lambda ex: (ex[self.image_key], ex[self.label_key]))

    def decode_image(self, encoded: Any) -> Any:
        """The dataset's own decoder for an encoded image of :meth:`examples`."""
        return self.builder.info.features[self.image_key].decode_example(encoded)

    def labels(self, split: str) -> list[int]:
        """The label of every example of one of our splits, in :meth:`examples` order."""
        from transferkit.data.pipeline import fixed_parallelism

        out: list[int] = []
        for y in fixed_parallelism(self.examples(split).map(lambda x, y: y).batch(4096).prefetch(2)):
            out.extend(int(v) for v in y.numpy())
        return out


def open_tfds(
    source: str, data_dir: str | None = None, split_map: str | dict[str, str] | None = None
) -> TfdsSource:
    """Builds, downloads if needed and prepares ``tfds:NAME``.

    Default splits: the dataset's ``train``, its ``validation`` (or ``val``) and its ``test``.
    Without a validation split ``splits`` has no ``"val"``: :func:`transferkit.data.load_data`
    then carves it out of train, stratified (never from ``test``, which would leave no unseen data).

    Raises:
        DataError: unknown name, a dataset that is not downloaded and cannot be downloaded
            (offline), or one without an image and a class label.
    """
    import tensorflow_datasets as tfds

    name = source[len(PREFIX):].strip()
    if not name:
        raise DataError("write the tensorflow-datasets name after 'tfds:', e.g. tfds:oxford_flowers102")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # tfds raises DatasetNotFoundError, ValueError or a config error
        base = name.split("/")[0].split(":")[0]
        close = difflib.get_close_matches(base, tfds.list_builders(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see tfds.list_builders()"
        raise DataError(f"no tensorflow-datasets dataset {name!r} ({type(err).__name__}){hint}") from None
    try:
        builder.download_and_prepare()
    except Exception as err:  # network errors, missing extras and manual-download datasets alike
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise DataError(
            f"tfds:{name} is not downloaded in {builder.data_dir} and could not be downloaded "
            f"({type(err).__name__}: {reason}); download it once with network access, or pass --data-dir "
            "where it is already prepared"
        ) from None
    info = builder.info
    keys = info.supervised_keys
    if not keys or len(keys) != 2 or not isinstance(keys[0], str):
        raise DataError(f"tfds:{name} has no (image, label) supervised keys; it is not an image classification dataset")
    image_key, label_key = keys
    label_feature = info.features[label_key]
    names = getattr(label_feature, "names", None)
    if not names:
        raise DataError(f"tfds:{name}'s label {label_key!r} is not a class label")
    available = set(info.splits.keys())
    mapping = dict(split_map) if isinstance(split_map, dict) else parse_split_map(split_map)
    if "train" not in mapping:
        mapping["train"] = "train"
    if "val" not in mapping:
        found = [c for c in ("validation", "val") if c in available]
        if found:
            mapping["val"] = found[0]
    if "test" not in mapping and "test" in available and mapping.get("val") != "test":
        mapping["test"] = "test"
    return TfdsSource(name, builder, mapping, tuple(str(n) for n in names), image_key, label_key)
