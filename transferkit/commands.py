"""The core commands: ``finetune`` and ``models``."""

from __future__ import annotations

import argparse
from typing import Any


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def add_commands(sub: Any) -> None:
    from transferkit.data.options import add_data_arguments
    from transferkit.train import FinetuneConfig

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

    m = sub.add_parser("models", help="list registered models", description="List every registered model name with its parameter count, default input size and pretrained weights.")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*'")
    m.add_argument("--no-params", action="store_true", help="skip building models to count parameters (fast)")
    m.set_defaults(func=run_models)


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
    from transferkit.data.options import data_options_from_args
    from transferkit.train import FinetuneConfig, finetune

    config = FinetuneConfig(
        base=args.base,
        data=args.data,
        out=args.out,
        weights=None if str(args.weights).lower() == "none" else args.weights,
        image_size=args.image_size,
        batch_size=args.batch_size,
        epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        lr=args.lr,
        fine_tune_lr=args.fine_tune_lr,
        unfreeze_from=args.unfreeze_from,
        unfreeze_last=args.unfreeze_last,
        gradual=args.gradual,
        train_bn=args.train_bn,
        lr_mult=args.lr_mult,
        optimizer=args.optimizer,
        mixed_precision=args.mixed_precision,
        channels=args.channels,
        val_split=args.val_split,
        seed=args.seed,
        dropout=args.dropout,
        augment=args.augment,
        frozen_cache=args.frozen_cache,
        distribute=args.distribute,
        overwrite=args.overwrite,
        resume=args.resume,
        data_options=data_options_from_args(args),
    )
    result = finetune(config, verbose=0 if args.quiet else 1)
    print(f"validation accuracy: {result.val_accuracy:.4f}")
    print(f"run folder: {result.out}" if result.out else "worker done (the chief writes the run folder)")
    return 0


def run_models(args: argparse.Namespace) -> int:
    import transferkit as tk
    from transferkit.weights import pretrained_tags

    names = tk.list_models(args.pattern)
    print(f"{'name':<24} {'params':>13} {'input':>11}  pretrained")
    for name in names:
        info = tk.get_model_info(name)
        params = "-" if args.no_params else f"{tk.create_model(name).count_params():,}"
        h, w, c = info.input_shape
        print(f"{name:<24} {params:>13} {f'{h}x{w}x{c}':>11}  {','.join(pretrained_tags(name)) or '-'}")
    return 0
