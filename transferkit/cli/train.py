"""The training commands: ``finetune`` and ``extract``."""

from __future__ import annotations

import argparse
from typing import Any

from transferkit.cli.args import add_data_arguments, config_from_args, positive_int
from transferkit.cli.console import progress_verbosity


def add_commands(sub: Any) -> None:
    from transferkit.runs.finetune import FinetuneConfig

    d = FinetuneConfig()
    p = sub.add_parser(
        "finetune",
        help="fine-tune a pretrained model on a folder of class sub-folders",
        description=(
            "Train a new head on a frozen pretrained base, then unfreeze the top of the base and "
            "train on at a lower learning rate. Writes a run folder with saved_model/, "
            "model.keras, labels.txt, metrics.json, history.csv, config.json and split.csv."
        ),
    )
    p.add_argument("--base", default=d.base, help=f"model name (default {d.base}; see `transferkit models`)")
    p.add_argument(
        "--data",
        default=d.data,
        help="folder with one sub-folder of images per class, or 'sample' for the built-in "
        "ants/bees sample (default)",
    )
    p.add_argument("--out", default=None, help="run folder to create (default runs/<base>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument(
        "--no-resume", dest="resume", action="store_false",
        help="start again rather than resume an interrupted run with the same --out (by default it resumes)",
    )
    p.add_argument(
        "--weights",
        default=d.weights,
        help="'imagenet' (default), 'none' for random init, or a weights file",
    )
    p.add_argument("--image-size", type=positive_int, default=None, help="square input side in pixels")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--epochs", type=int, default=d.epochs, help="head-only epochs (phase 1)")
    p.add_argument(
        "--fine-tune-epochs", type=int, default=d.fine_tune_epochs, help="epochs with the top of the base unfrozen (phase 2; 0 skips it)"
    )
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate of phase 1")
    p.add_argument("--fine-tune-lr", type=float, default=None, help="learning rate of phase 2 (default lr/100)")
    add_finetune_arguments(p)
    p.add_argument("--val-split", type=float, default=d.val_split, help="validation fraction per class")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random flip/rotation/zoom")
    p.add_argument(
        "--no-frozen-cache", dest="frozen_cache", action="store_false",
        help="recompute the frozen layers every epoch (by default, without augmentation, their output is cached)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_data_arguments(p)
    p.set_defaults(func=run_finetune)

    from transferkit.runs.extract import ExtractConfig

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


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    """How much of the base trains in phase 2, and how (docs/transfer.md)."""
    g = p.add_argument_group("unfreezing (phase 2)")
    which = g.add_mutually_exclusive_group()
    which.add_argument(
        "--unfreeze-from", default=None, metavar="STAGE|LAYER",
        help="stage (e.g. stage4) or layer name from which the base trains in phase 2 "
        "(default: the last stage; 'all' for the whole base)",
    )
    which.add_argument("--unfreeze-last", type=positive_int, default=None, metavar="N", help="unfreeze the last N blocks of the base")
    which.add_argument("--unfreeze", dest="unfreeze_from", choices=("all",), help="'--unfreeze all' trains the whole base in phase 2")
    g.add_argument(
        "--gradual", type=int, default=0, metavar="N",
        help="gradual unfreezing: start phase 2 with the last stage, unfreeze one more stage every N epochs",
    )
    g.add_argument(
        "--train-bn", action="store_true",
        help="let unfrozen BatchNormalization layers train (default: BN stays frozen in inference mode)",
    )
    g.add_argument(
        "--lr-mult", default=None, metavar="MULT",
        help="learning-rate multiplier of the base in phase 2 (e.g. 0.1), or one per stage "
        "(e.g. 'stage4=0.1,stage5=0.3'; 'base=' sets the rest)",
    )
    g.add_argument("--optimizer", choices=("adam", "adamw", "sgd", "rmsprop"), default="adam")
    g.add_argument(
        "--mixed-precision", choices=("mixed_float16", "mixed_bfloat16"), default=None,
        help="train in mixed precision (the final softmax stays float32)",
    )
    g.add_argument(
        "--channels", type=int, choices=(1, 3), default=None,
        help="1 trains on grey images; 3-channel weights are adapted by summing the first convolution's RGB kernels",
    )
    g.add_argument(
        "--distribute", choices=("mirrored", "multi_worker"), default=None,
        help="tf.distribute: 'mirrored' over this machine's GPUs; 'multi_worker' as one worker of the "
        "cluster in TF_CONFIG (every worker runs the same command; the chief writes the run folder)",
    )


def run_finetune(args: argparse.Namespace) -> int:
    from transferkit.runs.finetune import FinetuneConfig, finetune

    config = config_from_args(FinetuneConfig, args)
    result = finetune(config, verbose=progress_verbosity(args.quiet))
    print(f"validation accuracy: {result.val_accuracy:.4f}")
    print(f"run folder: {result.out}" if result.out else "worker done (the chief writes the run folder)")
    return 0


def run_extract(args: argparse.Namespace) -> int:
    from transferkit.errors import ConfigError
    from transferkit.runs.extract import ExtractConfig, extract

    try:
        hidden = tuple(int(u) for u in args.hidden_units.split(",") if u.strip())
    except ValueError:
        raise ConfigError(f"--hidden-units takes numbers like '256' or '512,256', got {args.hidden_units!r}") from None
    augment = args.augment_spec not in (None, "", "none", "off")
    config = config_from_args(ExtractConfig, args, hidden_units=hidden, augment=augment)
    result = extract(config, verbose=progress_verbosity(args.quiet))
    print(f"validation accuracy: {result.val_accuracy:.4f}")
    print(f"run folder: {result.out}")
    return 0
