"""Evaluation reports: metrics, plots and a short Markdown summary of a classifier's predictions.

``write_report`` turns true labels and predicted probabilities into ``report.json`` (accuracy,
top-k, precision/recall/F1 per class and averaged, the confusion matrix, the most confident
mistakes), PNG plots and ``report.md``. Metrics are computed with numpy here because the few
lines needed are not worth a scikit-learn dependency. Plots use matplotlib's Agg canvas directly,
so nothing touches pyplot's global state or needs a display.
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
PHASE_FINE_TUNE = "fine_tune"
PLOTS = ("confusion_matrix.png", "per_class.png", "training_curves.png", "mistakes.png")

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
    """num / den, 0 where den is 0 (a class never predicted has precision 0), without a warning."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def confusion_matrix(y_true: Labels, y_pred: Labels, num_classes: int) -> np.ndarray:
    """Counts with rows the true class and columns the predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def classification_metrics(y_true: Labels, probs: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, top-k accuracy, per-class and averaged precision/recall/F1 and the confusion matrix.

    Macro averages run over the classes that occur in the labels or the predictions (as
    scikit-learn does by default); weighted averages weight each class by its support.

    Args:
        y_true: true class index of each image.
        probs: ``(images, classes)`` scores, columns in the order of ``class_names``.
        class_names: the class of each column.

    Returns:
        A JSON-ready dict.
    """
    truth = np.asarray(y_true, np.int64)
    probs = np.asarray(probs, np.float64).reshape(len(truth), len(class_names))
    predicted = probs.argmax(axis=1)
    matrix = confusion_matrix(truth, predicted, len(class_names))
    tp = np.diag(matrix)
    support, predicted_count = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = _safe_divide(tp, predicted_count)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    present = (support + predicted_count) > 0
    scores = {"precision": precision, "recall": recall, "f1": f1}
    report: dict[str, Any] = {
        "num_images": len(truth),
        "accuracy": float((predicted == truth).mean()) if len(truth) else 0.0,
    }
    if len(class_names) > TOP_K:
        top = np.argsort(-probs, axis=1)[:, :TOP_K]
        report[f"top_{TOP_K}_accuracy"] = float((top == truth[:, None]).any(axis=1).mean()) if len(truth) else 0.0
    report["macro"] = {k: float(v[present].mean()) if present.any() else 0.0 for k, v in scores.items()}
    report["weighted"] = {k: float(_safe_divide((v * support).sum(), support.sum())) for k, v in scores.items()}
    report["per_class"] = {
        name: {**{k: float(v[i]) for k, v in scores.items()}, "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    report["class_names"] = list(class_names)
    report["confusion_matrix"] = matrix.tolist()
    return report


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

    Plots: ``confusion_matrix.png`` and ``per_class.png`` always, ``training_curves.png`` when
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
    plots = ["confusion_matrix.png", "per_class.png"]
    _plot_confusion(out / plots[0], np.asarray(report["confusion_matrix"]), class_names)
    _plot_per_class(out / plots[1], report["per_class"])
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


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
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


def _column(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    """One history column as floats, NaN where a row has no value."""
    return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])


def _plot_history(path: Path, history: Sequence[dict[str, Any]]) -> None:
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
    fig.savefig(path, dpi=100)


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
    fig = _figure(2.4 * cols, 2.7 * rows)
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
