"""The use-as-is commands: ``predict`` (top-k labels of an unchanged pretrained model or of a
trained run), ``evaluate`` (accuracy on a labelled dataset, optionally through a class map to
ImageNet classes, with no training; a report with plots) and ``extract`` (a new head on cached
frozen features)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from transferkit.commands import positive_int


def add_commands(sub: Any) -> None:
    from transferkit.data.options import add_data_arguments

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
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--output", default=None, help="write the predictions to this CSV file")
    p.add_argument("--path-column", default="path", help="CSV column of image paths (default path)")
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
    add_data_arguments(e, training=False)
    e.set_defaults(func=run_evaluate)

    from transferkit.features import ExtractConfig

    d = ExtractConfig()
    x = sub.add_parser(
        "extract",
        help="train a new head on the frozen base's cached features (use as-is)",
        description=(
            "The base never trains: its features are computed once and cached (on disk by default, "
            "keyed by model, weights, image size and file contents), the new head trains on them, "
            "and the run folder holds one image-in, probabilities-out model like finetune's. With "
            "--augment the features change every epoch and are not cached."
        ),
    )
    x.add_argument("--base", default=d.base, help=f"model name (default {d.base})")
    x.add_argument("--data", default=d.data, help="folder of class sub-folders, CSV, tfds:NAME or 'sample'")
    x.add_argument("--out", default=None, help="run folder to create (default runs/<base>-extract-<time>)")
    x.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    x.add_argument("--weights", default=d.weights, help="'imagenet' (default), 'none', or a weights file")
    x.add_argument("--image-size", type=positive_int, default=None)
    x.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 for grey images (first convolution adapted)")
    x.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    x.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"head training epochs (default {d.epochs})")
    x.add_argument("--lr", type=float, default=d.lr, help=f"head learning rate (default {d.lr})")
    x.add_argument("--dropout", type=float, default=d.dropout)
    x.add_argument("--hidden-units", default="", help="hidden layers of the head, e.g. '256' or '512,256'")
    x.add_argument("--val-split", type=float, default=d.val_split)
    x.add_argument("--seed", type=int, default=d.seed)
    x.add_argument("--feature-cache", choices=("disk", "memory", "none"), default=d.feature_cache, help="where features are cached (default disk)")
    x.add_argument("--feature-cache-dir", default=None, help="folder of the disk feature cache (default ~/.cache/transferkit/features)")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    add_data_arguments(x)
    x.set_defaults(func=run_extract)


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="a run folder or .keras file (default: the unchanged pretrained classifier)")
    g.add_argument("--base", default="mobilenet_v1_025", help="pretrained model name, without --model")
    g.add_argument("--weights", default="imagenet", help="pretrained tag, without --model")
    g.add_argument("--batch-size", type=positive_int, default=32)


def load_classifier(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The model to run and its class names: a trained run, or the unchanged pretrained one."""
    from transferkit import imagenet
    from transferkit.errors import ConfigError

    if args.model is None:
        return imagenet.pretrained_classifier(args.base, args.weights), imagenet.class_names()
    import keras

    import transferkit.layers  # noqa: F401  (registers the custom layers)
    import transferkit.transfer  # noqa: F401  (registers the optimizers)

    path = Path(args.model).expanduser()
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file() or path.suffix != ".keras":
        raise ConfigError(f"--model must be a run folder or a .keras file, got {args.model!r}")
    model = keras.saving.load_model(path, compile=False)
    labels_file = path.with_name("labels.txt")
    from transferkit.runs import read_labels

    n = model.output_shape[-1] if not isinstance(model.output_shape, list) else model.output_shape[0][-1]
    labels = read_labels(labels_file) if labels_file.is_file() else [str(i) for i in range(n)]
    return model, labels


def collect_images(inputs: list[str], path_column: str = "path") -> list[str]:
    """Image paths from files, folders (recursive) and CSVs, in the order given."""
    from transferkit.data.folder import is_image_name
    from transferkit.errors import DataError

    files: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            files += sorted(str(p) for p in path.rglob("*") if p.is_file() and is_image_name(p.name))
        elif path.suffix.lower() in (".csv", ".tsv") and path.is_file():
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
            if rows and path_column not in rows[0]:
                raise DataError(f"{path} has no column {path_column!r}; pass --path-column")
            files += [str((path.parent / r[path_column]).resolve()) for r in rows]
        elif path.is_file():
            files.append(str(path))
        else:
            raise DataError(f"{item!r} is neither an image, a folder nor a CSV")
    if not files:
        raise DataError(f"no images found in {', '.join(inputs)}")
    return files


def predict_files(model: Any, files: list[str], batch_size: int = 32) -> tuple[Any, list[int]]:
    """Probabilities for image files (decoded like training images), and the indices that
    decoded; files that cannot be decoded are left out."""
    import numpy as np
    import tensorflow as tf

    from transferkit.data import pipeline
    from transferkit.data.probe import probe_files
    from transferkit.features import feature_fn

    size, channels = model.input_shape[1], model.input_shape[-1]
    probes = probe_files(files)
    ok = [i for i, p in enumerate(probes) if not p.problem]
    decoded = pipeline.decoded_dataset(
        [files[i] for i in ok], [0] * len(ok), size,
        [probes[i].format_code for i in ok], [probes[i].orientation for i in ok], cache=None,
    )
    run = feature_fn(model)
    probs, done = [], []
    for index, images, _ in decoded.batch(batch_size).prefetch(2):
        images = tf.cast(images, tf.float32)
        if channels == 1:
            images = tf.image.rgb_to_grayscale(images)
        out = run(images)
        probs.append(np.asarray(out[0] if isinstance(out, (list, tuple)) else out, np.float32))
        done += [ok[j] for j in index.numpy().tolist()]
    width = model.output_shape[-1] if not isinstance(model.output_shape, list) else model.output_shape[0][-1]
    return (np.concatenate(probs) if probs else np.zeros((0, width), np.float32)), done


def run_predict(args: argparse.Namespace) -> int:
    from transferkit.imagenet import top_k

    files = collect_images(args.inputs, args.path_column)
    model, labels = load_classifier(args)
    probs, done = predict_files(model, files, args.batch_size)
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
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from transferkit import imagenet
    from transferkit.data import index_source
    from transferkit.errors import ConfigError

    manifest = _run_manifest(args.model)
    report_dir = _report_dir(args)
    excluded = 0
    if args.data is None:
        if manifest is None:
            raise ConfigError("pass --data, or --model a run folder (its split.csv names the held-out images)")
        held_out = manifest.held_out_split()
        files, label_list = manifest.subset(held_out)
        class_names = list(manifest.class_names)
        print(f"scoring the run's {held_out} split: {len(files)} images")
    else:
        index = index_source(args.data, args.path_column, args.label_column, args.split_column)
        files, label_list, class_names = list(index.files), list(index.labels), list(index.class_names)
        if manifest is not None:
            trained = {os.path.abspath(f) for f in manifest.subset("train")[0]}
            keep = [i for i, f in enumerate(files) if os.path.abspath(f) not in trained]
            excluded = len(files) - len(keep)
            files, label_list = [files[i] for i in keep], [label_list[i] for i in keep]
            if excluded:
                print(f"left out {excluded} images the model trained on (the run's split.csv)")
    if not files:
        raise ConfigError("no images left to score: every image of --data was a training image of this run")
    model, labels = load_classifier(args)
    truth = np.asarray(label_list)
    probs, done = predict_files(model, files, args.batch_size)
    truth = truth[done]
    if args.model is None:
        if not args.class_map:
            raise ConfigError(
                "the unchanged classifier predicts ImageNet classes; pass --map to say which stand for "
                f"your classes (e.g. --map {','.join(f'{c}={c}' for c in class_names)}), or --model a trained run"
            )
        scores = imagenet.mapped_predictions(probs, imagenet.parse_class_map(args.class_map), class_names)
    else:
        unknown = [c for c in class_names if c not in labels]
        if unknown:
            raise ConfigError(f"the model was not trained on class {unknown[0]!r}; its classes: {', '.join(labels)}")
        scores = probs[:, [labels.index(c) for c in class_names]]
    predicted = scores.argmax(axis=1)
    metrics: dict[str, Any] = {
        "accuracy": float((predicted == truth).mean()) if len(truth) else 0.0,
        "num_images": int(len(truth)),
        "skipped": len(files) - len(done),
        "excluded_training_images": excluded,
        "per_class_accuracy": {
            c: float((predicted[truth == k] == k).mean()) if (truth == k).any() else None
            for k, c in enumerate(class_names)
        },
    }
    print(f"accuracy: {metrics['accuracy']:.4f} on {metrics['num_images']} images")
    for c, acc in metrics["per_class_accuracy"].items():
        print(f"  {c}: {acc:.4f}" if acc is not None else f"  {c}: -")
    if args.output:
        Path(args.output).write_text(json.dumps(metrics, indent=2) + "\n")
    if report_dir is not None:
        from transferkit.report import write_report

        write_report(report_dir, truth, scores, class_names, files=[files[i] for i in done], history=_run_history(args.model))
        print(f"report: {report_dir}")
    return 0


def _run_folder(model: str) -> Path:
    """The folder of a --model run folder or .keras file."""
    folder = Path(model).expanduser()
    return folder if folder.is_dir() else folder.parent


def _run_manifest(model: str | None) -> Any:
    """The manifest of a run folder given as --model, if it has one."""
    from transferkit.data.split import read_manifest

    if model is None:
        return None
    folder = _run_folder(model)
    return read_manifest(folder / "split.csv") if (folder / "split.csv").is_file() else None


def _report_dir(args: argparse.Namespace) -> Path | None:
    """--report, else RUN/report/ when --model is a run folder; refused early if it is a file."""
    from transferkit.report import check_report_dir

    if args.report is not None:
        return check_report_dir(args.report)
    if args.model is not None and Path(args.model).expanduser().is_dir():
        return check_report_dir(Path(args.model).expanduser() / "report")
    return None


def _run_history(model: str | None) -> list[dict[str, str]] | None:
    """The per-epoch rows of a run folder given as --model (its history.csv), if it has them."""
    path = _run_folder(model) / "history.csv" if model is not None else None
    if path is None or not path.is_file():
        return None
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_extract(args: argparse.Namespace) -> int:
    from transferkit.data.options import data_options_from_args
    from transferkit.errors import ConfigError
    from transferkit.features import ExtractConfig, extract

    try:
        hidden = tuple(int(u) for u in args.hidden_units.split(",") if u.strip())
    except ValueError:
        raise ConfigError(f"--hidden-units takes numbers like '256' or '512,256', got {args.hidden_units!r}") from None
    options = data_options_from_args(args)
    augment = options.augment_spec not in (None, "", "none", "off")
    config = ExtractConfig(
        base=args.base,
        data=args.data,
        out=args.out,
        weights=None if str(args.weights).lower() == "none" else args.weights,
        image_size=args.image_size,
        channels=args.channels,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        dropout=args.dropout,
        hidden_units=hidden,
        val_split=args.val_split,
        seed=args.seed,
        augment=augment,
        feature_cache=args.feature_cache,
        feature_cache_dir=args.feature_cache_dir,
        overwrite=args.overwrite,
        data_options=options,
    )
    result = extract(config, verbose=0 if args.quiet else 1)
    print(f"validation accuracy: {result.val_accuracy:.4f}")
    print(f"run folder: {result.out}")
    return 0
