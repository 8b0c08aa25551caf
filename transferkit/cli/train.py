"""The training commands: ``finetune``, ``extract`` and ``train``."""

from __future__ import annotations

import argparse
from typing import Any

from transferkit.cli.console import progress_verbosity
from transferkit.cli.args import add_data_arguments, config_from_args, hidden_units_arg, positive_int

PHASE_SCHEDULES = ("constant", "cosine", "one-cycle")  # finetune --schedule (runs.finetune.SCHEDULES)


def lr_arg(text: str) -> float | str:
    """``--lr``: a number, or ``auto``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def add_run_arguments(p: argparse.ArgumentParser, d: Any, data_help: str) -> None:
    """The flags every training run shares: what to train on, where the run folder goes, resume,
    TensorBoard."""
    p.add_argument("--base", default=d.base, help=f"model name (default {d.base}; see `transferkit models`)")
    p.add_argument("--data", default=d.data, help=data_help)
    p.add_argument("--out", default=None, help="run folder to create (default runs/<base>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument(
        "--no-resume", dest="resume", action="store_false",
        help="start again rather than resume an interrupted run with the same settings (by default it resumes)",
    )
    p.add_argument(
        "--tensorboard", action="store_true",
        help="write TensorBoard logs (live in the hidden .RUN.progress folder, then RUN/tensorboard/)",
    )


def add_source_arguments(p: argparse.ArgumentParser, d: Any, out_help: str, weights_help: str) -> None:
    """The model, its weights and data, and the output folder, of a command that is not resumable."""
    p.add_argument("--base", default=d.base, help=f"model name (default {d.base}; see `transferkit models`)")
    p.add_argument("--data", default=d.data, help="folder of class sub-folders, CSV, tfds:NAME or 'sample'")
    p.add_argument("--out", default=None, help=out_help)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--weights", default=d.weights, help=weights_help)


def add_split_arguments(p: argparse.ArgumentParser, d: Any) -> None:
    """finetune's (and lr-find's) validation split, dropout, augmentation, frozen cache and seed."""
    p.add_argument("--val-split", type=float, default=d.val_split, help="validation fraction per class")
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout before the new classification layer")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random flip/rotation/zoom")
    p.add_argument(
        "--no-frozen-cache", dest="frozen_cache", action="store_false",
        help="recompute the frozen layers every epoch (by default, without augmentation, their output is cached)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the split, shuffling, augmentation and initialisation")


def add_commands(sub: Any) -> None:
    from transferkit.runs.config import FinetuneConfig

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
    add_run_arguments(
        p, d, "folder with one sub-folder of images per class, CSV, tfds:NAME, or 'sample' for the built-in "
        "ants/bees sample (default)",
    )
    p.add_argument(
        "--weights",
        default=d.weights,
        help="'imagenet' (default) or a weights file (to train from random init, use `transferkit train`)",
    )
    p.add_argument("--image-size", type=positive_int, default=None, help="square input side in pixels")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="images per training step")
    p.add_argument("--epochs", type=int, default=d.epochs, help="head-only epochs (phase 1)")
    p.add_argument(
        "--fine-tune-epochs", type=int, default=d.fine_tune_epochs, help="epochs with the top of the base unfrozen (phase 2; 0 skips it)"
    )
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="label smoothing of the loss (default 0)")
    add_regularization_arguments(p)
    p.add_argument(
        "--lr", type=lr_arg, default=d.lr,
        help="learning rate of phase 1, or 'auto': a range test (as lr-find) picks it, and phase 2's is a hundredth of it",
    )
    p.add_argument("--fine-tune-lr", type=float, default=None, help="learning rate of phase 2 (default lr/100)")
    p.add_argument(
        "--schedule", choices=PHASE_SCHEDULES, default=d.schedule,
        help="learning rate within each phase: constant, cosine (decays to 0 over the phase) or one-cycle "
        "(warm-up from lr/25 over 30%% of the phase, then cosine to 0)",
    )
    p.add_argument(
        "--early-stopping", type=positive_int, default=None, metavar="PATIENCE",
        help="end a phase once the validation loss has not improved for PATIENCE epochs, keeping the best "
        "epoch's weights (default: every epoch trains)",
    )
    add_finetune_arguments(p)
    add_split_arguments(p, d)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_data_arguments(p)
    p.set_defaults(func=run_finetune)
    add_lr_find_command(sub)

    from transferkit.runs.config import ExtractConfig

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
    add_source_arguments(x, d, "run folder to create (default runs/<base>-extract-<time>)", "'imagenet' (default), 'none', or a weights file")
    x.add_argument("--image-size", type=positive_int, default=None, help="square input side in pixels (default: the weights' or model's)")
    x.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 for grey images (first convolution adapted)")
    x.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="images per step")
    x.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"head training epochs (default {d.epochs})")
    x.add_argument("--lr", type=float, default=d.lr, help=f"head learning rate (default {d.lr})")
    x.add_argument("--dropout", type=float, default=d.dropout, help="dropout before the new classification layer")
    x.add_argument("--hidden-units", default="", help="hidden layers of the head, e.g. '256' or '512,256'")
    x.add_argument("--val-split", type=float, default=d.val_split, help="validation fraction per class")
    x.add_argument("--seed", type=int, default=d.seed, help="seed of the split, shuffling and initialisation")
    x.add_argument("--feature-cache", choices=("disk", "memory", "none"), default=d.feature_cache, help="where features are cached (default disk)")
    x.add_argument("--feature-cache-dir", default=None, help="folder of the disk feature cache (default ~/.cache/transferkit/features)")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    add_data_arguments(x)
    x.set_defaults(func=run_extract)
    add_train_command(sub)


def add_lr_find_command(sub: Any) -> None:
    from transferkit.runs.config import FinetuneConfig, LRFindConfig

    d, f = FinetuneConfig(), LRFindConfig()
    p = sub.add_parser(
        "lr-find",
        help="learning-rate range test: the loss as the rate grows, and a suggested rate for finetune",
        description=(
            "Trains a throwaway copy of finetune's model for a few batches while the learning rate grows "
            "geometrically from --start-lr to --end-lr (Smith 2015; fastai's lr_find), stopping when the "
            "smoothed loss diverges. Writes lr_find.png (the curve, suggestions marked), lr_find.csv and "
            "lr_find.json, and prints the suggestions: the valley (the suggested rate) and the steepest "
            "descent. `finetune --lr auto` runs the same test and uses the valley."
        ),
    )
    add_source_arguments(p, d, "folder to create for the plot and curve (default runs/<base>-lr-find-<time>)", "'imagenet' (default) or a weights file")
    p.add_argument("--start-lr", type=float, default=f.start_lr, help="learning rate of the first batch")
    p.add_argument("--end-lr", type=float, default=f.end_lr, help="learning rate of the last batch")
    p.add_argument("--steps", type=int, default=f.steps, help="batches of the test (fewer when the loss diverges)")
    p.add_argument(
        "--phase", choices=("head", "fine_tune"), default=f.phase,
        help="'head': the new head on the frozen base (finetune's phase 1); 'fine_tune': the part of the base "
        "phase 2 unfreezes, after --epochs of phase 1 at --lr",
    )
    p.add_argument("--image-size", type=positive_int, default=None, help="square input side in pixels")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="images per step")
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs of phase 1 before a --phase fine_tune test")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate of phase 1 before a --phase fine_tune test")
    add_split_arguments(p, d)
    add_finetune_arguments(p, distributed=False)
    p.add_argument("--quiet", action="store_true", help="no log lines")
    add_data_arguments(p)
    p.set_defaults(func=run_lr_find)


def add_train_command(sub: Any) -> None:
    from transferkit.runs.config import TrainConfig

    d = TrainConfig()
    t = sub.add_parser(
        "train",
        help="train a model from scratch (every layer, from the first step) with a paper's schedule",
        description=(
            "Every layer trains from the first step, from random init (or --weights FILE to continue), "
            "with the classifier and training settings of the model's paper (--schedule). Writes the same "
            "run folder as finetune; rerun the same command to resume an interrupted run."
        ),
    )
    add_run_arguments(
        t, d, f"folder of class sub-folders, CSV, tfds:NAME, 'digits' (scikit-learn's handwritten digits) "
        f"or 'sample' (default {d.data})",
    )
    t.add_argument("--weights", default="none", help="'none' for random init (default), or a weights file to continue from")
    t.add_argument("--image-size", type=positive_int, default=None, help="square input side in pixels (default: the model's)")
    t.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 for grey images (default: the model's)")
    s = t.add_argument_group("schedule (the preset's value when a flag is not given)")
    s.add_argument(
        "--schedule", default=d.schedule, metavar="NAME",
        help=f"training preset: resnet-cifar, wrn, vgg, cosine, one-cycle or constant (see docs/recipes.md; default {d.schedule})",
    )
    s.add_argument("--epochs", type=positive_int, default=None, help="epochs (default: the preset's, 30)")
    s.add_argument("--batch-size", type=positive_int, default=None, help="batch size (default: the preset's)")
    s.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    s.add_argument("--weight-decay", type=float, default=None, help="L2 weight decay (default: the preset's)")
    s.add_argument("--momentum", type=float, default=None, help="SGD momentum (default: the preset's, 0.9)")
    s.add_argument(
        "--nesterov", action=argparse.BooleanOptionalAction, default=None,
        help="Nesterov momentum (default: the preset's)",
    )
    s.add_argument("--label-smoothing", type=float, default=None, help="label smoothing (default: the preset's, 0)")
    s.add_argument("--warmup-epochs", type=float, default=None, help="warm-up epochs (default: the preset's)")
    m = t.add_argument_group("model")
    m.add_argument(
        "--aux", action=argparse.BooleanOptionalAction, default=None,
        help="train with the model's auxiliary classifiers, loss weight 0.3 each (default: on when it has "
        "them, GoogLeNet); they are dropped from the saved model",
    )
    m.add_argument("--dropout", type=float, default=None, help="dropout of the head (default: the paper's)")
    m.add_argument("--hidden-units", default=None, help="hidden FC layers of the head, e.g. '512,256' (default: the paper's)")
    add_regularization_arguments(m)
    m.add_argument(
        "--model-option", action="append", default=[], metavar="KEY=VALUE",
        help="a builder argument of the family, e.g. plain=true, block_order=full_preact, block_dropout=0.3 (repeatable; default none)",
    )
    t.add_argument("--val-split", type=float, default=d.val_split, help=f"validation fraction per class (default {d.val_split})")
    t.add_argument("--seed", type=int, default=d.seed, help=f"seed (default {d.seed})")
    t.add_argument(
        "--mixed-precision", choices=("mixed_float16", "mixed_bfloat16"), default=None, help="train in mixed precision (default off)"
    )
    t.add_argument("--distribute", choices=("mirrored", "multi_worker"), default=None, help="tf.distribute strategy (default none)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    add_data_arguments(t)
    t.set_defaults(func=run_train)


def add_regularization_arguments(p: Any) -> None:
    """Weight averaging and stochastic depth, shared by finetune and train (docs/transfer.md)."""
    p.add_argument(
        "--ema", type=float, nargs="?", const=0.999, default=None, metavar="MOMENTUM",
        help="keep an exponential moving average of the weights (momentum 0.999 unless given) and save it "
        "instead of the last step's weights (default off)",
    )
    p.add_argument(
        "--drop-path", type=float, default=0.0, metavar="RATE",
        help="stochastic depth: drop residual branches per example in training, the last block at RATE, "
        "earlier ones linearly less (resnet, wide resnet; efficientnet's drop_connect_rate) (default 0: off)",
    )


def add_finetune_arguments(p: argparse.ArgumentParser, distributed: bool = True) -> None:
    """How much of the base trains in phase 2, and how (docs/transfer.md); ``--distribute`` too
    when ``distributed``."""
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
    g.add_argument("--optimizer", choices=("adam", "adamw", "sgd", "rmsprop"), default="adam", help="optimizer of both phases (sgd: momentum 0.9)")
    g.add_argument(
        "--mixed-precision", choices=("mixed_float16", "mixed_bfloat16"), default=None,
        help="train in mixed precision (the final softmax stays float32)",
    )
    g.add_argument(
        "--channels", type=int, choices=(1, 3), default=None,
        help="1 trains on grey images; 3-channel weights are adapted by summing the first convolution's RGB kernels",
    )
    if not distributed:
        return
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


def run_lr_find(args: argparse.Namespace) -> int:
    from transferkit.runs.config import FinetuneConfig, LRFindConfig
    from transferkit.runs.lr_find import lr_find

    config = config_from_args(FinetuneConfig, args, out=None, overwrite=False)
    result = lr_find(config, config_from_args(LRFindConfig, args), verbose=0 if args.quiet else 1)
    print(f"steepest descent: {result.steepest:.3g}")
    print(f"valley: {result.valley:.3g}")
    print(f"suggested learning rate: {result.suggestion:.3g} (finetune --lr {result.suggestion:.2g})")
    print(f"plot and curve: {result.out}")
    return 0


def run_extract(args: argparse.Namespace) -> int:
    from transferkit.runs.extract import ExtractConfig, extract

    hidden = hidden_units_arg(args.hidden_units)
    augment = args.augment_spec not in (None, "", "none", "off")
    config = config_from_args(ExtractConfig, args, hidden_units=hidden, augment=augment)
    result = extract(config, verbose=progress_verbosity(args.quiet))
    print(f"validation accuracy: {result.val_accuracy:.4f}")
    print(f"run folder: {result.out}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from transferkit.runs.recipe import parse_set
    from transferkit.runs.train import TrainConfig, train

    config = config_from_args(
        TrainConfig, args, hidden_units=hidden_units_arg(args.hidden_units) if args.hidden_units else None,
        model_options=dict(parse_set(item, "--model-option") for item in args.model_option),
    )
    result = train(config, verbose=progress_verbosity(args.quiet))
    print(f"validation accuracy: {result.val_accuracy:.4f}")
    print(f"run folder: {result.out}" if result.out else "worker done (the chief writes the run folder)")
    return 0
