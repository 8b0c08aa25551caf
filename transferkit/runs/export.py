"""``transferkit export``: a run's model in another format, checked for parity in its own runtime.

Formats: ``saved_model`` (the serving signatures of :mod:`transferkit.runs.serving`), ``keras``,
``tflite`` (converted from a plain SavedModel with ``tf.lite.TFLiteConverter.from_saved_model``:
Keras 3 models fail the direct conversion, keras#19108), ``onnx`` and ``openvino`` (Keras'
own ``model.export``). TFLite, ONNX and OpenVINO take float32 0-255 RGB squares of the model's
size, ``[batch, size, size, channels]``: crop and resize as the SavedModel does before calling them.

After each export the artifact is loaded in its runtime (plain TensorFlow, the LiteRT
interpreter, onnxruntime, OpenVINO) and run on up to 32 of the run's validation images;
``export.json`` records the largest difference of probabilities against the Keras model, top-1
agreement, the file size and images/s.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import ConfigError
from transferkit.inference.predict import main_output
from transferkit.runs.config import EXPORT_FORMATS, EXPORT_QUANTIZE
from transferkit.runs.folder import OpenedRun, check_out_dir, open_run, run_folder, write_json, write_labels
from transferkit.runs.serving import export_saved_model

FORMATS = EXPORT_FORMATS
QUANTIZE = EXPORT_QUANTIZE
PARITY_IMAGES = 32
CALIBRATION_IMAGES = 100
MIN_AGREEMENT = 0.99
# format -> (artifact name inside the export folder, modules its export and runtime need)
_ARTIFACTS = {
    "saved_model": ("saved_model", ()),
    "keras": ("model.keras", ()),
    "tflite": ("model.tflite", ()),
    "onnx": ("model.onnx", ("tf2onnx", "onnx", "onnxruntime")),
    "openvino": ("model.xml", ("openvino",)),
}
# What the parity check passes its runtime, recorded in export.json: OpenVINO's CPU plugin runs a
# float32 model in bfloat16 by default on CPUs that have it (AVX-512 BF16, AMX), which moved
# probabilities by up to 0.09 on a MobileNet; the check is of the float32 artifact as exported.
RUNTIME_CONFIG: dict[str, dict[str, str]] = {"openvino": {"INFERENCE_PRECISION_HINT": "f32"}}


class ParityError(Exception):
    """The exported artifact disagrees with the Keras model (not a user error: exit 1)."""


@dataclass
class ExportReport:
    """What ``export.json`` records of one export."""

    format: str
    quantize: str
    path: str
    file_bytes: int
    num_images: int
    images_from: str
    max_abs_diff: float
    top1_agreement: float
    images_per_second: float
    keras_images_per_second: float
    min_agreement: float | None
    runtime_config: dict[str, str]


def check_export(fmt: str, quantize: str) -> None:
    """Refuses an unknown format or quantization, or a missing optional runtime, before any work."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"unknown quantization {quantize!r}; choose from {', '.join(QUANTIZE)}")
    if quantize != "none" and fmt != "tflite":
        raise ConfigError(f"--quantize {quantize} applies to --format tflite only; leave it at none for {fmt}")
    missing = [m for m in _ARTIFACTS[fmt][1] if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"--format {fmt} needs {', '.join(missing)}, which is not installed; "
            f"run: pip install \"transferkit[export]\""
        )


def default_export_dir(run: OpenedRun, model_path: str | os.PathLike[str], fmt: str, quantize: str) -> Path:
    """``RUN/export/<format>[-<quantize>]`` (beside a lone ``.keras`` file: ``<name>-export/``)."""
    base = run.folder / "export" if run.folder is not None else Path(model_path).with_suffix("").parent / f"{Path(model_path).stem}-export"
    return base / (fmt if quantize == "none" else f"{fmt}-{quantize}")


def export(
    model_path: str | os.PathLike[str],
    format: str = "saved_model",
    quantize: str = "none",
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    min_agreement: float | None = None,
) -> ExportReport:
    """Exports a run's (or a ``.keras`` file's) model and checks it against the Keras model.

    Written atomically into ``out`` (default ``RUN/export/<format>[-<quantize>]``): the artifact,
    ``labels.txt`` and ``export.json``.

    Args:
        model_path: A run folder or a ``.keras`` file.
        format: One of :data:`FORMATS`.
        quantize: One of :data:`QUANTIZE` (TFLite only); int8 calibrates on the run's own
            training images.
        out: The export folder; refused if it exists unless ``overwrite``.
        overwrite: Replace an existing ``out``.
        min_agreement: Top-1 agreement below which the export fails; default 0.99 for float
            formats, none for int8 (reported only).

    Raises:
        ConfigError: a bad format, a missing runtime, no training images to calibrate int8, an
            existing ``out``.
        ParityError: the artifact's top-1 agrees with the Keras model on fewer images than
            ``min_agreement``; nothing is written.
    """
    check_export(format, quantize)
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        raise ConfigError(f"--min-agreement is a fraction in [0, 1], got {min_agreement}")
    run = open_run(model_path)
    if not hasattr(run.model, "save"):
        raise ConfigError(f"{str(model_path)!r} is an exported SavedModel; export from its run folder or .keras file")
    calibration = _split_files(run, "train") if quantize == "int8" else []
    if quantize == "int8" and not calibration:
        raise ConfigError(
            f"--quantize int8 calibrates on the run's training images, and {str(model_path)!r} has none "
            "(no split.csv with training files that exist); use dynamic or float16"
        )
    threshold = min_agreement if min_agreement is not None else (None if quantize == "int8" else MIN_AGREEMENT)
    dest = check_out_dir(out if out is not None else default_export_dir(run, model_path, format, quantize), overwrite)
    files, source = _parity_files(run)
    size = run.model.input_shape[1]
    images = _decode(files, size, run.model.input_shape[-1])
    with run_folder(dest) as tmp:
        artifact = tmp / _ARTIFACTS[format][0]
        _WRITERS[format](run, artifact, quantize, calibration)
        predict = _RUNTIMES[format](artifact)
        expected, keras_rate = _timed(_keras_predict(run.model), images, files)
        got, rate = _timed(predict, images, files)
        report = ExportReport(
            format=format,
            quantize=quantize,
            path=str(dest / artifact.name),
            file_bytes=_bytes(artifact),
            num_images=len(images),
            images_from=source,
            max_abs_diff=float(np.abs(got - expected).max()),
            top1_agreement=float(np.mean(got.argmax(1) == expected.argmax(1))),
            images_per_second=rate,
            keras_images_per_second=keras_rate,
            min_agreement=threshold,
            runtime_config=RUNTIME_CONFIG.get(format, {}),
        )
        if threshold is not None and report.top1_agreement < threshold:
            raise ParityError(
                f"{format} export agrees with the Keras model on top-1 for {report.top1_agreement:.1%} of "
                f"{report.num_images} images (needs {threshold:.0%}; largest probability difference "
                f"{report.max_abs_diff:.3g}); nothing was written"
            )
        write_labels(tmp / "labels.txt", run.class_names)
        write_json(tmp / "export.json", asdict(report))
    return report


def _split_files(run: OpenedRun, split: str) -> list[str]:
    if run.manifest is None:
        return []
    return [f for f, s in zip(run.manifest.files, run.manifest.splits) if s == split and os.path.isfile(f)]


def _parity_files(run: OpenedRun) -> tuple[list[str], str]:
    """Up to 32 of the run's validation images; the bundled sample when the run has none."""
    files = _split_files(run, "val")
    if files:
        return files[:PARITY_IMAGES], "validation split"
    from transferkit.data import SAMPLE_DIR

    sample = sorted(str(p) for p in Path(SAMPLE_DIR).rglob("*.jp*g"))
    return sample[:: max(1, len(sample) // PARITY_IMAGES)][:PARITY_IMAGES], "bundled sample"


def _decode(files: list[str], size: int, channels: int) -> np.ndarray:
    """The files as float32 squares, through the decode road."""
    from transferkit.data import pipeline

    done = dict(pipeline.decode_files(files, size, channels).as_numpy_iterator())
    if len(done) != len(files):
        raise ConfigError(f"{len(files) - len(done)} of the parity images cannot be decoded; check the run's split.csv files")
    return np.stack([done[i] for i in range(len(files))]).astype(np.float32)


def _timed(predict: Callable[[np.ndarray, list[str]], np.ndarray], images: np.ndarray, files: list[str]) -> tuple[np.ndarray, float]:
    """Probabilities and images/s (the second of two passes: the first builds and warms up)."""
    predict(images[:1], files[:1])
    start = time.perf_counter()
    out = np.asarray(predict(images, files), np.float32)
    return out, len(images) / max(time.perf_counter() - start, 1e-9)


def _bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    extra = path.with_suffix(".bin")  # OpenVINO's weights
    return path.stat().st_size + (extra.stat().st_size if extra != path and extra.is_file() else 0)


def _keras_predict(model: Any) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    from transferkit.transfer.features import feature_fn

    run = feature_fn(model)

    def predict(images: np.ndarray, files: list[str]) -> np.ndarray:
        out = run(images)
        return np.asarray(main_output(out))

    return predict


# --- writers: (run, artifact path, quantize, calibration files) -> None -----------------------


def _write_saved_model(run: OpenedRun, path: Path, quantize: str, calibration: list[str]) -> None:
    export_saved_model(run.model, path, run.class_names)


def _write_keras(run: OpenedRun, path: Path, quantize: str, calibration: list[str]) -> None:
    run.model.save(path)


def _write_tflite(run: OpenedRun, path: Path, quantize: str, calibration: list[str]) -> None:
    import tensorflow as tf

    model = run.model
    with tempfile.TemporaryDirectory() as plain:
        # A plain fixed-size signature: Keras 3 models fail TFLite's direct conversion (keras#19108).
        model.export(plain, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(plain)
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            squares = _decode(calibration[:CALIBRATION_IMAGES], model.input_shape[1], model.input_shape[-1])
            converter.representative_dataset = lambda: ([x[None]] for x in squares)
        path.write_bytes(converter.convert())


def _write_onnx(run: OpenedRun, path: Path, quantize: str, calibration: list[str]) -> None:
    run.model(np.zeros((1, *run.model.input_shape[1:]), np.float32))  # the ONNX export needs a called model
    run.model.export(str(path), format="onnx", verbose=False)


def _write_openvino(run: OpenedRun, path: Path, quantize: str, calibration: list[str]) -> None:
    run.model.export(str(path), format="openvino", verbose=False)


_WRITERS = {
    "saved_model": _write_saved_model,
    "keras": _write_keras,
    "tflite": _write_tflite,
    "onnx": _write_onnx,
    "openvino": _write_openvino,
}


# --- runtimes: artifact path -> predict(images, files) -------------------------------------------


def _run_saved_model(path: Path) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    """Plain TensorFlow on the files' bytes (``serve_bytes``): the whole serving path."""
    import tensorflow as tf

    served = tf.saved_model.load(str(path)).signatures["serve_bytes"]

    def predict(images: np.ndarray, files: list[str]) -> np.ndarray:
        data = tf.constant([Path(f).read_bytes() for f in files])
        return served(images_bytes=data)["probabilities"].numpy()

    return predict


def _run_keras(path: Path) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    import keras

    return _keras_predict(keras.saving.load_model(path, compile=False))


def _run_tflite(path: Path) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the LiteRT wheel is optional; TensorFlow still ships the interpreter
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=str(path))

    def predict(images: np.ndarray, files: list[str]) -> np.ndarray:
        entry, exit_ = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(entry["index"], list(images.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry["index"], images.astype(entry["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(exit_["index"]).astype(np.float32)

    return predict


def _run_onnx(path: Path) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images, files: session.run(None, {name: images})[0]


def _run_openvino(path: Path) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", RUNTIME_CONFIG["openvino"])
    return lambda images, files: compiled(images)[0]


_RUNTIMES = {
    "saved_model": _run_saved_model,
    "keras": _run_keras,
    "tflite": _run_tflite,
    "onnx": _run_onnx,
    "openvino": _run_openvino,
}
