"""The commands that use a classifier: ``predict`` (top-k labels of an unchanged pretrained model
or of a trained run) and ``evaluate`` (accuracy on a labelled dataset, optionally through a class
map to ImageNet classes, with no training; a report with plots)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from transferkit.cli.args import add_data_arguments, positive_int


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="classify images with a pretrained model (unchanged) or a trained run",
        description=(
            "Print (or write as CSV) the top-k classes of each image. Without --model, the "
            "published classifier is used unchanged (--base, --weights imagenet) and the labels are "
            "ImageNet's; its include_top weights file is downloaded once into $KERAS_HOME/models."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGES|DIR|CSV", help="image files, folders (searched recursively) or CSVs of paths")
    _add_model_arguments(p)
    p.add_argument("--top-k", type=positive_int, default=5, help="classes listed per image, best first")
    p.add_argument("--output", default=None, help="write the predictions to this CSV file")
    p.add_argument("--path-column", default="path", help="CSV column of image paths (default path)")
    _add_tta_argument(p)
    p.set_defaults(func=run_predict)

    e = sub.add_parser(
        "evaluate",
        help="score a model on a labelled dataset (no training needed with --map)",
        description=(
            "Accuracy of a trained run (--model) or of the unchanged pretrained classifier on every "
            "image of --data. The unchanged classifier predicts ImageNet classes; --map says which "
            "ImageNet classes stand for each of your classes (e.g. 'ant=ant,bee=bee', several "
            "joined by '+', or a file of 'class<TAB>imagenet classes' lines)."
        ),
    )
    e.add_argument(
        "--data",
        default=None,
        help="folder of class sub-folders, a CSV, or 'sample'; without it, a run folder's held-out "
        "split (split.csv). A run's training files are never scored",
    )
    _add_model_arguments(e)
    e.add_argument("--map", dest="class_map", default=None, metavar="MAP", help="user class -> ImageNet classes (for the unchanged classifier)")
    e.add_argument("--output", default=None, help="write the metrics to this JSON file")
    e.add_argument(
        "--report",
        default=None,
        metavar="DIR",
        help="write an evaluation report (report.json, report.md, confusion matrix, per-class, training "
        "curve and mistake plots) into DIR; default RUN/report/ when --model is a run folder",
    )
    _add_tta_argument(e)
    add_data_arguments(e, training=False)
    e.set_defaults(func=run_evaluate)


def _add_tta_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tta", nargs="?", const="flip", choices=("flip", "crops"), default=None,
        help="test-time augmentation, probabilities averaged: 'flip' (the image and its mirror; the "
        "default of a bare --tta) or 'crops' (four corner and centre crops of the image decoded 8/7 as "
        "large, and their mirrors) (default off)",
    )


def _warn_tta(model: Any, tta: str | None) -> None:
    from transferkit.inference.predict import tta_caveat

    caveat = tta_caveat(model, tta)
    if caveat:
        print(f"transferkit: warning: {caveat}", file=sys.stderr)


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="a run folder, .keras file or exported SavedModel folder (default: the unchanged pretrained classifier)")
    g.add_argument("--base", default="mobilenet_v1_025", help="pretrained model name, without --model")
    g.add_argument("--weights", default="imagenet", help="pretrained tag, without --model")
    g.add_argument("--batch-size", type=positive_int, default=32, help="images per batch")


def _classifier(args: argparse.Namespace) -> Any:
    """The trained run given as --model, or (model_classes None) the unchanged classifier."""
    from transferkit.models import pretrained_classifier
    from transferkit.runs.folder import OpenedRun, open_run

    if args.model is not None:
        return open_run(args.model)
    return OpenedRun(pretrained_classifier(args.base, args.weights), [])


def _refuse_models_as_images(inputs: list[str]) -> None:
    """A model among the images (``transferkit predict RUN photos/``, a natural slip): without
    this, the run folder's own plots would be classified by the ImageNet classifier."""
    from transferkit.errors import ConfigError
    from transferkit.runs.folder import find_model

    for item in inputs:
        if find_model(item) is not None:
            raise ConfigError(
                f"{item!r} is a model (a run folder, .keras file or exported SavedModel), not images; "
                f"pass it as --model {item}, followed by the images"
            )


def run_predict(args: argparse.Namespace) -> int:
    from transferkit.inference import collect_images, predict_files
    from transferkit.inference.imagenet import class_names, top_k

    _refuse_models_as_images(args.inputs)
    files = collect_images(args.inputs, args.path_column)
    run = _classifier(args)
    labels = run.class_names if args.model is not None else class_names()
    _warn_tta(run.model, args.tta)
    start = time.perf_counter()
    probs, done = predict_files(run.model, files, args.batch_size, args.tta)
    seconds = time.perf_counter() - start
    ranked = top_k(probs, min(args.top_k, len(labels)), labels)
    for i in sorted(set(range(len(files))) - set(done)):
        print(f"transferkit predict: skipped {files[i]} (cannot be decoded)", file=sys.stderr)
    for i, row in zip(done, ranked):
        print(f"{files[i]}\t" + ", ".join(f"{label} ({p:.3f})" for label, p in row))
    if args.output:
        with open(args.output, "w", newline="") as f:
            writer = csv.writer(f)
            k = len(ranked[0]) if ranked else 0
            writer.writerow(["path"] + [c for j in range(1, k + 1) for c in (f"label_{j}", f"probability_{j}")])
            for i, row in zip(done, ranked):
                writer.writerow([files[i]] + [v for label, p in row for v in (label, f"{p:.6f}")])
    print(f"{len(done)} images in {seconds:.2f} s ({len(done) / max(seconds, 1e-9):.1f} images/s)", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from transferkit.errors import ConfigError
    from transferkit.inference import check_class_map, score, select_images

    if args.model is not None and args.class_map is not None:
        raise ConfigError(
            "--map is for the unchanged ImageNet classifier; a --model already names its classes "
            "(labels.txt): drop --map, or drop --model to score the unchanged classifier"
        )
    run = _classifier(args) if args.model is not None else None
    report_dir = _report_dir(args, run)
    images = select_images(
        args.data, run.manifest if run is not None else None,
        path_column=args.path_column, label_column=args.label_column, split_column=args.split_column,
    )
    if args.data is None:
        print(f"scoring {images.source}: {len(images.files)} images")
    elif images.excluded:
        print(f"left out {images.excluded} images the model trained on (the run's split.csv)")
    if run is None:
        check_class_map(args.class_map, images)  # before the classifier is loaded
        run = _classifier(args)
    _warn_tta(run.model, args.tta)
    scores = score(
        run.model, run.class_names if args.model is not None else None, images, args.class_map, args.batch_size,
        args.tta,
    )
    metrics = scores.metrics
    print(f"accuracy: {metrics['accuracy']:.4f} on {metrics['num_images']} images")
    if args.tta:
        print(f"accuracy with test-time augmentation ({args.tta}): {metrics['tta_accuracy']:.4f}")
    for c, acc in metrics["per_class_accuracy"].items():
        print(f"  {c}: {acc:.4f}")
    if args.output:
        Path(args.output).write_text(json.dumps(metrics, indent=2) + "\n")
    if report_dir is not None:
        from transferkit.inference.report import write_report

        write_report(report_dir, scores.truth, scores.scores, scores.class_names, files=scores.files, history=run.history)
        print(f"report: {report_dir}")
    return 0


def _report_dir(args: argparse.Namespace, run: Any) -> Path | None:
    """--report, else RUN/report/ when --model is a run folder; refused early if it is a file."""
    from transferkit.inference.report import check_report_dir

    if args.report is not None:
        return check_report_dir(args.report)
    if run is not None and run.folder is not None:
        return check_report_dir(run.folder / "report")
    return None
