"""The notebook API: runs started with keywords (``tk.finetune(base=..., data=..., epochs=1)``),
and a :class:`Run` to look at and use a run folder, fresh or reopened with :func:`load`.

The keywords are the fields of the run's config (:class:`~transferkit.runs.finetune.FinetuneConfig`,
...) and of its :class:`~transferkit.data.options.DataOptions`, exactly the command line's flags
(``--fine-tune-epochs`` is ``fine_tune_epochs=``); the command line builds its configs through
:func:`make_config` too, so both give the same ``config.json``.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transferkit.errors import ConfigError
from transferkit.inference.predict import main_output
from transferkit.runs.config import LRFindConfig, make_config
from transferkit.runs.extract import ExtractConfig, extract as extract_run
from transferkit.runs.finetune import FinetuneConfig, finetune as finetune_run
from transferkit.runs.lr_find import LRFindResult, lr_find as lr_find_run
from transferkit.runs.train import TrainConfig, train as train_run

class History(list):
    """A run's per-epoch rows (``history.csv``: epoch, phase, loss, accuracy, val_loss,
    val_accuracy, ...) as a list of dicts that shows as a table in a notebook."""

    def column(self, name: str) -> list[float]:
        """One metric over the epochs (NaN where a row lacks it)."""
        return [float(row.get(name, "nan")) if row.get(name, "") != "" else float("nan") for row in self]

    def _repr_html_(self) -> str:
        if not self:
            return "<p>no epochs</p>"
        columns = list(dict.fromkeys(key for row in self for key in row))
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c, '')))}</td>" for c in columns) + "</tr>" for row in self
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() and abs(number) < 1e9 else f"{number:.4f}"


class Plot:
    """A matplotlib figure that shows itself inline in a notebook (as PNG, with no pyplot
    backend needed).

    Attributes:
        figure: The ``matplotlib.figure.Figure``.
    """

    def __init__(self, figure: Any):
        self.figure = figure

    def savefig(self, *args: Any, **kwargs: Any) -> None:
        self.figure.savefig(*args, **kwargs)

    def _repr_png_(self) -> bytes:
        import io

        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


class Run:
    """A run folder to look at and use: its model, history, metrics and report, predictions on
    new images, evaluation on other data and export.

    Attributes:
        out: The run folder (None on a multi-worker cluster's non-chief workers).
    """

    def __init__(self, out: str | os.PathLike[str] | None, model: Any = None, class_names: Sequence[str] | None = None):
        self.out = Path(out) if out is not None else None
        self._model = model
        self._class_names = list(class_names) if class_names is not None else None

    # --- what the folder holds ---------------------------------------------------------------

    def _json(self, name: str) -> dict[str, Any]:
        if self.out is None or not (self.out / name).is_file():
            return {}
        return json.loads((self.out / name).read_text())

    @property
    def config(self) -> dict[str, Any]:
        """The run's settings (``config.json``)."""
        return self._json("config.json")

    @property
    def metrics(self) -> dict[str, Any]:
        """Final validation accuracy and loss, counts, per-epoch rows (``metrics.json``)."""
        return self._json("metrics.json")

    @property
    def val_accuracy(self) -> float:
        return float(self.metrics.get("val_accuracy", float("nan")))

    @property
    def report(self) -> dict[str, Any]:
        """The validation split's report (``report/report.json``): per-class scores, confusion
        matrix, calibration, most confident mistakes."""
        return self._json("report/report.json")

    @property
    def history(self) -> History:
        """Per-epoch rows, every phase (a table in a notebook)."""
        from transferkit.runs.folder import read_history

        return History(read_history(self.out / "history.csv") if self.out is not None else [])

    @property
    def model(self) -> Any:
        """The trained Keras model (loaded from ``model.keras`` on first use)."""
        if self._model is None:
            self._open()
        return self._model

    @property
    def class_names(self) -> list[str]:
        """The classes, in the model's output order (``labels.txt``)."""
        if self._class_names is None:
            self._open()
        return list(self._class_names or [])

    def _open(self) -> None:
        from transferkit.runs.folder import open_run

        if self.out is None:
            raise ConfigError("this worker wrote no run folder (the chief did); open the chief's run with tk.load")
        opened = open_run(self.out)
        self._model, self._class_names = opened.model, opened.class_names

    # --- using it ----------------------------------------------------------------------------

    def predict(self, images: Any, top_k: int = 1, batch_size: int = 32) -> list[list[tuple[str, float]]]:
        """The ``top_k`` (class, probability) pairs of each image, best first.

        ``images``: a path (image, folder or CSV), a list of paths; the encoded bytes of image
        files (what a Colab upload gives), or a list of them; a PIL image or a list of them; an
        array / list of arrays of raw 0-255 pixels (``(height, width)`` grey, or ``(height, width,
        channels)`` with 1, 3 or 4 channels; any size). Every image is cropped and resized exactly
        as the training images were; bytes are decoded as files are (EXIF orientation included),
        PIL images turned upright by their EXIF orientation, transparency is put on white.
        """
        from transferkit.inference.imagenet import top_k as ranked

        probabilities = self.probabilities(images, batch_size)
        return ranked(probabilities, min(top_k, probabilities.shape[1]), self.class_names)

    def probabilities(self, images: Any, batch_size: int = 32) -> Any:
        """Class probabilities, ``(images, classes)``, columns in :attr:`class_names` order (see
        :meth:`predict` for what ``images`` may be). Paths that cannot be decoded are an error."""
        import numpy as np

        from transferkit.errors import DataError
        from transferkit.inference.predict import collect_images, predict_files

        if _is_paths(images):
            files = collect_images([str(images)] if isinstance(images, (str, os.PathLike)) else [str(p) for p in images])
            probs, done = predict_files(self.model, files, batch_size)
            if len(done) < len(files):
                bad = [files[i] for i in sorted(set(range(len(files))) - set(done))]
                raise DataError(f"{len(bad)} images cannot be decoded, e.g. {bad[0]}; run `transferkit doctor`")
            return probs
        if _is_one_image(images):
            items = [images]
        elif isinstance(images, (list, tuple)) or getattr(images, "ndim", 0) == 4:  # a batch array
            items = list(images)
        else:
            raise ConfigError(
                f"images must be paths, encoded image bytes, PIL images or arrays of pixels (or lists of them); "
                f"got {type(images).__name__}"
            )
        if not items:
            raise DataError("no images given")
        size, channels = self.model.input_shape[1], self.model.input_shape[-1]
        if all(isinstance(item, (bytes, bytearray)) for item in items):
            batch = _squares_from_bytes(items, size, channels)
        else:
            batch = _resized([_pixels(item) for item in items], size, channels)
        out = self.model.predict(batch, batch_size=batch_size, verbose=0)
        return np.asarray(main_output(out))

    def evaluate(self, data: str | None = None, batch_size: int = 32, tta: str | None = None, **columns: Any) -> dict[str, Any]:
        """Accuracy and per-class accuracy on ``data`` (a folder, CSV, ``sample``), leaving out
        the run's training images; without ``data``, on the run's held-out split. ``tta``
        (``"flip"`` or ``"crops"``) adds ``tta_accuracy``, with test-time augmentation."""
        from transferkit.data.split import read_manifest
        from transferkit.inference import score, select_images

        split = self.out / "split.csv" if self.out is not None else None
        manifest = read_manifest(split) if split is not None and split.is_file() else None
        images = select_images(data, manifest, **columns)
        return score(self.model, self.class_names, images, batch_size=batch_size, tta=tta).metrics

    def export(self, format: str = "saved_model", **options: Any) -> Any:
        """Exports the run's model (``saved_model``, ``keras``, ``tflite``, ``onnx``, ``openvino``;
        ``quantize=``, ``out=``, ``overwrite=``, ``min_agreement=``) and checks the artifact against
        the Keras model; returns the export's report (see :func:`transferkit.runs.export.export`)."""
        from transferkit.runs.export import export

        if self.out is None:
            raise ConfigError("this worker wrote no run folder (the chief did); export the chief's run")
        return export(self.out, format, **options)

    def plot(self) -> Plot:
        """The training curves (loss and accuracy, train and validation, the phase boundary
        marked); shown inline in Jupyter and Colab, ``.figure`` is the matplotlib figure."""
        from transferkit.inference.report import plot_history

        return Plot(plot_history(self.history))

    # --- display -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Run({str(self.out)!r}, val_accuracy={self.val_accuracy:.4f})"

    def _repr_html_(self) -> str:
        config, metrics = self.config, self.metrics
        rows = [
            ("folder", str(self.out)),
            ("mode", config.get("mode", "")),
            ("base", f"{config.get('base', '')} ({config.get('weights') or 'random init'})"),
            ("data", f"{config.get('data', '')}: {metrics.get('num_train', '?')} training / {metrics.get('num_val', '?')} validation images"),
            ("classes", ", ".join(config.get("class_names", []))),
            ("validation accuracy", f"{self.val_accuracy:.4f}"),
        ]
        table = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table>{table}</table><details><summary>history</summary>{self.history._repr_html_()}</details>"


def _is_paths(images: Any) -> bool:
    if isinstance(images, (str, os.PathLike)):
        return True
    return isinstance(images, (list, tuple)) and bool(images) and all(isinstance(i, (str, os.PathLike)) for i in images)


def _is_pil(image: Any) -> bool:
    return type(image).__module__.startswith("PIL.") and hasattr(image, "getexif")


def _is_one_image(images: Any) -> bool:
    return isinstance(images, (bytes, bytearray)) or _is_pil(images) or getattr(images, "ndim", 0) in (2, 3)


def _pixels(image: Any) -> Any:
    """One image as an ``(height, width, 1 or 3)`` array of 0-255 pixels, upright, opaque."""
    import numpy as np

    if _is_pil(image):
        from PIL import ImageOps

        image = ImageOps.exif_transpose(image)
        has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
        image = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    elif isinstance(image, (bytes, bytearray)):
        raise ConfigError("give encoded image bytes on their own or as a list of bytes, not mixed with other images")
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ConfigError(
            f"an array image must be (height, width) or (height, width, 1, 3 or 4 channels), got shape {array.shape}"
        )
    if array.shape[-1] in (2, 4):  # with alpha: onto white, by the decode road's own step
        import tensorflow as tf

        from transferkit.data.pipeline import over_white

        rgba = array if array.shape[-1] == 4 else np.concatenate([np.repeat(array[..., :1], 3, -1), array[..., 1:]], -1)
        array = np.asarray(over_white(tf.convert_to_tensor(rgba)))
    return array


def _squares_from_bytes(items: list[bytes], size: int, channels: int) -> Any:
    """Encoded images as the model's squares, decoded in the graph as the decode road decodes
    files (the SavedModel's ``serve_bytes`` steps)."""
    import re

    import numpy as np
    import tensorflow as tf

    from transferkit.errors import DataError
    from transferkit.runs.serving import squares_from_bytes

    try:
        return np.asarray(squares_from_bytes(tf.constant([bytes(b) for b in items]), size, channels))
    except tf.errors.InvalidArgumentError as err:
        found = re.search(r"serve_bytes: image\D*?(\d+)", err.message or "")
        which = f"image {found.group(1)}" if found else "one of the images"
        raise DataError(
            f"{which} (counting from 0) of the bytes given cannot be decoded: it is not a JPEG, PNG, GIF, BMP or "
            "WebP file, or it is corrupt or truncated"
        ) from None


def _resized(arrays: list[Any], size: int, channels: int) -> Any:
    """Raw pixel arrays as one batch, through the decode road's square crop and resize."""
    import numpy as np

    from transferkit.data.pipeline import square_image

    return np.stack([np.asarray(square_image(a, size, channels)) for a in arrays])


def load(path: str | os.PathLike[str]) -> Run:
    """Reopens a run folder (finetune, extract, train, tune) as a :class:`Run`.

    Raises:
        ConfigError: ``path`` is not a run folder.
    """
    folder = Path(path).expanduser()
    if not (folder / "model.keras").is_file() or not (folder / "config.json").is_file():
        raise ConfigError(
            f"{str(path)!r} is not a run folder (it has no model.keras and config.json); pass the folder "
            "a finetune/extract/train/tune run wrote"
        )
    return Run(folder)


def run_api(work: Callable[..., Any], cls: type) -> Callable[..., Run]:
    """The notebook form of a run function ``work(config, verbose, ...)``: a config or keywords
    in, a :class:`Run` out."""

    def start(config: Any = None, /, *, verbose: int = 1, **options: Any) -> Run:
        extra = {k: options.pop(k) for k in ("callbacks",) if k in options}
        result = work(make_config(cls, config, **options), verbose=verbose, **extra)
        return Run(result.out, result.model, result.class_names)

    start.__name__ = work.__name__
    start.__doc__ = (
        f"Starts a {work.__name__} run from a :class:`{cls.__name__}` or its fields as keywords "
        f"(``{work.__name__}(base='resnet20', data='./photos', epochs=1)``); returns a :class:`Run`.\n\n"
        + (work.__doc__ or "")
    )
    return start



finetune = run_api(finetune_run, FinetuneConfig)
extract = run_api(extract_run, ExtractConfig)
train = run_api(train_run, TrainConfig)


def lr_find(config: FinetuneConfig | None = None, /, *, verbose: int = 1, **options: Any) -> LRFindResult:
    """A learning-rate range test of a fine-tuning run: ``lr_find(base=..., data=..., steps=100)``.

    The keywords are :class:`~transferkit.runs.config.LRFindConfig`'s (``start_lr``, ``end_lr``,
    ``steps``, ``phase``, ``out``, ``overwrite``) and the fine-tuning run's, as ``finetune`` takes
    them. Returns the folder (plot, curve), the curve and its suggestions; it shows its plot in
    a notebook. See :func:`transferkit.runs.lr_find.lr_find`.
    """
    import dataclasses

    own = {f.name for f in dataclasses.fields(LRFindConfig)}
    find = make_config(LRFindConfig, **{k: options.pop(k) for k in list(options) if k in own})
    return lr_find_run(make_config(FinetuneConfig, config, **options), find, verbose=verbose)


def _as_run(run: Run | str | os.PathLike[str]) -> Run:
    return run if isinstance(run, Run) else load(run)


def predict(run: Run | str | os.PathLike[str], images: Any, top_k: int = 1, batch_size: int = 32) -> list[list[tuple[str, float]]]:
    """The ``top_k`` (class, probability) pairs of each image by a run (a :class:`Run` or its
    folder); ``images`` as :meth:`Run.predict` takes them."""
    return _as_run(run).predict(images, top_k, batch_size)


def evaluate(run: Run | str | os.PathLike[str], data: str | None = None, batch_size: int = 32, **columns: Any) -> dict[str, Any]:
    """Accuracy and per-class accuracy of a run on ``data`` (never its training images), or on its
    held-out split; see :meth:`Run.evaluate`."""
    return _as_run(run).evaluate(data, batch_size, **columns)
