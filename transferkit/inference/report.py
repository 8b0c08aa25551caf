"""Evaluation reports: metrics, plots and a short Markdown summary of a classifier's predictions.

``write_report`` turns true labels and predicted probabilities into ``report.json`` (accuracy,
top-k, precision/recall/F1 per class and averaged, the confusion matrix, calibration, the most
confident mistakes), PNG plots and ``report.md``. The metrics are scikit-learn's. Plots use
matplotlib's Agg canvas directly, so nothing touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import ConfigError

TOP_K = 5
MAX_MISTAKES = 20
CALIBRATION_BINS = 10
PHASE_FINE_TUNE = "fine_tune"
PLOTS = ("confusion_matrix.png", "per_class.png", "reliability.png", "training_curves.png", "mistakes.png")

Labels = Sequence[int] | np.ndarray


def check_report_dir(folder: str | os.PathLike[str]) -> Path:
    """Refuses a report folder that is, or lies inside, an existing file; checked before any work.

    Args:
        folder: where the report is to be written (created if missing; existing report files in
            it are replaced, other files are left alone).

    Returns:
        The folder as a ``Path``.
    """
    path = Path(folder).expanduser()
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"report folder {str(path)!r}: {str(p)!r} is a file; choose a folder path for --report")
            break
    return path


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (an empty confusion-matrix row), without a warning."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def classification_metrics(y_true: Labels, probs: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, top-k accuracy, per-class and averaged precision/recall/F1, the confusion matrix
    and calibration (scikit-learn's metrics).

    Macro averages run over the classes that occur in the labels or the predictions
    (scikit-learn's default); weighted averages weight each class by its support. A class never
    predicted has precision 0.

    Args:
        y_true: true class index of each image (at least one image).
        probs: ``(images, classes)`` scores, columns in the order of ``class_names``.
        class_names: the class of each column.

    Returns:
        A JSON-ready dict.
    """
    from sklearn import metrics

    truth = np.asarray(y_true, np.int64)
    if not len(truth):
        raise ConfigError("no images to report on")
    probs = np.asarray(probs, np.float64).reshape(len(truth), len(class_names))
    predicted = probs.argmax(axis=1)
    every = list(range(len(class_names)))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, predicted, labels=every, zero_division=0
    )
    report: dict[str, Any] = {
        "num_images": len(truth),
        "accuracy": float(metrics.accuracy_score(truth, predicted)),
    }
    if len(class_names) > TOP_K:
        report[f"top_{TOP_K}_accuracy"] = float(metrics.top_k_accuracy_score(truth, probs, k=TOP_K, labels=every))
    for average in ("macro", "weighted"):
        # Without labels=, macro averages the classes present in the labels or the predictions.
        p, r, f, _ = metrics.precision_recall_fscore_support(truth, predicted, average=average, zero_division=0)
        report[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    report["per_class"] = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    report["class_names"] = list(class_names)
    report["confusion_matrix"] = metrics.confusion_matrix(truth, predicted, labels=every).tolist()
    report["calibration"] = calibration(truth, probs)
    return report


def calibration(y_true: Labels, probs: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Top-label calibration: how often the predicted class is right against how confident the
    prediction was, in ``bins`` equal-width confidence bins (Guo et al. 2017, "On Calibration of
    Modern Neural Networks").

    Returns:
        ``expected_calibration_error`` (the bins' mean gap between accuracy and confidence,
        weighted by their share of the images) and ``reliability``: the ``bin`` (0 is the lowest
        confidence), mean ``confidence``, ``accuracy`` and ``count`` of each non-empty bin, the
        points of a reliability diagram.
    """
    from sklearn.calibration import calibration_curve

    truth = np.asarray(y_true, np.int64)
    probs = np.asarray(probs, np.float64)
    predicted = probs.argmax(axis=1)
    confidence = np.clip(probs[np.arange(len(truth)), predicted], 0.0, 1.0)
    correct = (predicted == truth).astype(np.int64)
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform", pos_label=1)
    # calibration_curve does not return its bins' sizes, which the error is weighted by; they are
    # counted with its binning (interior edges, searchsorted).
    edges = np.linspace(0.0, 1.0, bins + 1)
    count = np.bincount(np.searchsorted(edges[1:-1], confidence), minlength=bins)
    used = np.flatnonzero(count)
    count = count[used]
    return {
        "bins": bins,
        "expected_calibration_error": float(np.sum(count * np.abs(accuracy - mean_confidence)) / len(truth)),
        "reliability": {
            "bin": used.tolist(),
            "confidence": mean_confidence.tolist(),
            "accuracy": accuracy.tolist(),
            "count": count.tolist(),
        },
    }


def confident_mistakes(
    y_true: Labels, probs: np.ndarray, class_names: Sequence[str], files: Sequence[str], limit: int = MAX_MISTAKES
) -> list[dict[str, Any]]:
    """The wrongly classified images, most confident first (confidence of the predicted class)."""
    truth = np.asarray(y_true, np.int64)
    probs = np.asarray(probs, np.float64).reshape(len(truth), len(class_names))
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(truth)), predicted]
    wrong = np.flatnonzero(predicted != truth)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    return [
        {
            "path": str(files[i]),
            "true": class_names[truth[i]],
            "predicted": class_names[predicted[i]],
            "confidence": float(confidence[i]),
        }
        for i in wrong.tolist()
    ]


def write_report(
    folder: str | os.PathLike[str],
    y_true: Labels,
    probs: np.ndarray,
    class_names: Sequence[str],
    files: Sequence[str] | None = None,
    history: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Writes ``report.json``, ``report.md`` and the plots into ``folder``.

    Plots: ``confusion_matrix.png``, ``per_class.png`` and ``reliability.png`` (calibration)
    always, ``training_curves.png`` when
    ``history`` is given, ``mistakes.png`` when ``files`` is given and a mistake was made.

    Args:
        folder: the report folder (created if missing).
        y_true: true class index of each image.
        probs: ``(images, classes)`` scores, columns in the order of ``class_names``.
        class_names: the class of each column.
        files: the image file of each row, to list and show the most confident mistakes.
        history: a run's per-epoch rows (``history.csv``: epoch, phase, loss, accuracy,
            val_loss, val_accuracy).

    Returns:
        The report as written to ``report.json`` (plus ``"plots"``, the PNG file names).
    """
    out = check_report_dir(folder)
    if files is not None and len(files) != len(y_true):
        raise ConfigError(f"{len(files)} files given for {len(y_true)} labels; pass one file per image")
    report = classification_metrics(y_true, probs, class_names)
    if files is not None:
        report["mistakes"] = confident_mistakes(y_true, probs, class_names, files)
    out.mkdir(parents=True, exist_ok=True)
    plots = ["confusion_matrix.png", "per_class.png", "reliability.png"]
    _plot_confusion(out / plots[0], np.asarray(report["confusion_matrix"]), class_names)
    _plot_per_class(out / plots[1], report["per_class"])
    _plot_reliability(out / plots[2], report["calibration"])
    if history:
        plots.append("training_curves.png")
        _plot_history(out / plots[-1], history)
    if report.get("mistakes"):
        plots.append("mistakes.png")
        _plot_mistakes(out / plots[-1], report["mistakes"])
    for stale in set(PLOTS) - set(plots):  # left by an earlier report in the same folder
        (out / stale).unlink(missing_ok=True)
    report["plots"] = plots
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(report))
    return report


# --- plots ----------------------------------------------------------------------------------


def _figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _plot_confusion(path: Path, matrix: np.ndarray, class_names: Sequence[str]) -> None:
    n = len(class_names)
    side = min(4 + 0.35 * n, 24)
    fig = _figure(side + 1.5, side)
    ax = fig.add_subplot()
    # Colours are row-normalised so that small classes are as visible as large ones.
    rates = _safe_divide(matrix, matrix.sum(axis=1, keepdims=True))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    font = 10 if n <= 15 else 7  # a cell is at least 0.35 inch, room for three digits at 7 pt
    ax.set_xticks(range(n), labels=class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels=class_names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (counts)")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=font,
                    color="white" if rates[i, j] > 0.5 else "black")
    fig.savefig(path, dpi=100)


def _plot_per_class(path: Path, per_class: dict[str, dict[str, float]]) -> None:
    names = list(per_class)
    n = len(names)
    fig = _figure(8, min(1.5 + 0.45 * n, 30))
    ax = fig.add_subplot()
    height = 0.27
    y = np.arange(n)
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.barh(y + (k - 1) * height, [per_class[c][key] for c in names], height, label=key)
    ax.set_yticks(y, labels=[f"{c} ({per_class[c]['support']})" for c in names], fontsize=10 if n <= 15 else 8)
    ax.set_ylim(n - 0.5, -0.5)  # first class on top
    ax.set_xlim(0, 1)
    ax.set_xlabel("score")
    ax.set_title("per-class precision, recall and F1 (support)")
    fig.legend(loc="outside lower center", ncols=3)
    fig.savefig(path, dpi=100)


def _plot_reliability(path: Path, calibration: dict[str, Any]) -> None:
    points = calibration["reliability"]
    fig = _figure(9, 4)
    curve, sizes = fig.subplots(1, 2)
    curve.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    curve.plot(points["confidence"], points["accuracy"], marker="o", label="model")
    curve.set_xlim(0, 1)
    curve.set_ylim(0, 1)
    curve.set_xlabel("confidence of the predicted class")
    curve.set_ylabel("accuracy")
    curve.set_title(f"reliability (expected calibration error {calibration['expected_calibration_error']:.3f})")
    curve.legend(loc="upper left")
    width = 1 / calibration["bins"]
    sizes.bar((np.asarray(points["bin"]) + 0.5) * width, points["count"], width=width * 0.9)
    sizes.set_xlim(0, 1)
    sizes.set_xlabel("confidence of the predicted class")
    sizes.set_ylabel("images")
    sizes.set_title("images per confidence bin")
    fig.savefig(path, dpi=100)


def _column(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    """One history column as floats, NaN where a row has no value."""
    return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])


def _plot_history(path: Path, history: Sequence[dict[str, Any]]) -> None:
    plot_history(history).savefig(path, dpi=100)


def plot_history(history: Sequence[dict[str, Any]]) -> Any:
    """Training curves (loss and accuracy, train and validation) with the boundary between the
    head and fine-tune phases marked, as a matplotlib figure."""
    epochs = _column(history, "epoch")
    phases = [str(r.get("phase", "")) for r in history]
    fig = _figure(10, 4)
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = _column(history, key)
            if not np.isnan(values).all():
                ax.plot(epochs, values, marker="o", label=label)
        if PHASE_FINE_TUNE in phases and phases.index(PHASE_FINE_TUNE) > 0:
            start = phases.index(PHASE_FINE_TUNE)
            ax.axvline((epochs[start - 1] + epochs[start]) / 2, color="grey", linestyle="--", label="head -> fine_tune")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    return fig


def _thumbnail(path: str, size: int = 160) -> np.ndarray | None:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        image.thumbnail((size, size))
        return np.asarray(image)
    except (OSError, ValueError):
        return None


def _plot_mistakes(path: Path, mistakes: Sequence[dict[str, Any]], columns: int = 5) -> None:
    rows = -(-len(mistakes) // columns)
    cols = min(columns, len(mistakes))
    # A fixed grid: the constrained layout of up to 20 image axes cost more than drawing them.
    fig = _figure(2.4 * cols, 2.7 * rows, layout=None)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.45 / (2.7 * rows), wspace=0.05, hspace=0.3)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes:
        ax.axis("off")
    for ax, m in zip(axes, mistakes):
        image = _thumbnail(m["path"])
        if image is None:
            ax.text(0.5, 0.5, "cannot be read", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.imshow(image)
        ax.set_title(f"true: {m['true']}\npredicted: {m['predicted']} ({m['confidence']:.2f})", fontsize=8)
    fig.savefig(path, dpi=100)


# --- Markdown -------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _markdown(report: dict[str, Any]) -> str:
    top = f"top_{TOP_K}_accuracy"
    summary = [("images", report["num_images"]), ("accuracy", f"{report['accuracy']:.4f}")]
    if top in report:
        summary.append((f"top-{TOP_K} accuracy", f"{report[top]:.4f}"))
    for avg in ("macro", "weighted"):
        summary += [(f"{avg} {k}", f"{v:.4f}") for k, v in report[avg].items()]
    summary.append(("expected calibration error", f"{report['calibration']['expected_calibration_error']:.4f}"))
    parts = [
        "# Evaluation report\n",
        _table(("metric", "value"), summary),
        "## Per class\n",
        _table(
            ("class", "precision", "recall", "F1", "support"),
            [(c, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", m["support"]) for c, m in report["per_class"].items()],
        ),
        "![precision, recall and F1 per class](per_class.png)\n",
        "## Confusion matrix\n",
        "Rows are the true class, columns the predicted class; colours are fractions of each row.\n",
        "![confusion matrix](confusion_matrix.png)\n",
        "## Calibration\n",
        "How often the predicted class is right against the confidence it was predicted with "
        f"({report['calibration']['bins']} equal-width bins); on the diagonal, confidence can be taken at its word.\n",
        "![reliability diagram](reliability.png)\n",
    ]
    if "training_curves.png" in report["plots"]:
        parts += ["## Training\n", "![training curves](training_curves.png)\n"]
    if "mistakes" in report:
        parts.append("## Most confident mistakes\n")
        if report["mistakes"]:
            parts += [
                _table(
                    ("image", "true", "predicted", "confidence"),
                    [(f"`{m['path']}`", m["true"], m["predicted"], f"{m['confidence']:.3f}") for m in report["mistakes"]],
                ),
                "![most confident mistakes](mistakes.png)\n",
            ]
        else:
            parts.append("None: every image was classified correctly.\n")
    return "\n".join(parts)


def plot_val_curves(curves: dict[str, Sequence[float]], title: str) -> Any:
    """Validation accuracy per epoch of several runs (a recipe's variants), each its own colour,
    as a matplotlib figure."""
    import textwrap

    from matplotlib import colormaps

    fig = _figure(9, 4.8)
    ax = fig.add_subplot()
    # Up to 20 distinct colours (tab10 repeats after 10, and a recipe may have more variants).
    colours = colormaps["tab10" if len(curves) <= 10 else "tab20"]
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(
            range(1, len(curve) + 1), curve, marker="o" if len(curve) < 15 else None, label=name,
            color=colours(i % colours.N), linestyle=("-", "--", ":")[i // colours.N % 3],
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(textwrap.fill(title, 70), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_lr_curve(lrs: Sequence[float], smoothed: Sequence[float], suggestions: dict[str, float]) -> Any:
    """A learning-rate range test's smoothed loss against the rate (log scale), with each
    suggested rate marked, as a matplotlib figure."""
    lrs, smoothed = np.asarray(lrs, dtype="float64"), np.asarray(smoothed, dtype="float64")
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    ax.plot(lrs, smoothed, label="smoothed loss")
    for (name, lr), colour in zip(suggestions.items(), ("tab:red", "tab:green", "tab:purple")):
        at = float(np.interp(np.log(lr), np.log(lrs), smoothed)) if len(lrs) else float("nan")
        ax.plot([lr], [at], marker="o", color=colour, linestyle="none", label=f"{name}: {lr:.2g}")
    ax.set_xscale("log")
    finite = smoothed[np.isfinite(smoothed)]
    if finite.size:  # the divergence would squash the interesting part of the curve
        low = finite.min()
        ax.set_ylim(low - 0.05 * abs(low), min(finite.max(), low + 4 * (finite[0] - low + 1e-3)))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title("learning-rate range test")
    ax.legend()
    return fig
