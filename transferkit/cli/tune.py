"""The ``tune`` command: hyperparameter search with keras-tuner (see :mod:`transferkit.tuning`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from transferkit.cli.args import add_data_arguments, data_options_from_args, positive_int, weights_arg
from transferkit.cli.console import progress_verbosity

TUNER_NAMES = ("random", "bayesian", "hyperband")
OBJECTIVE_NAMES = ("val_accuracy", "val_loss", "accuracy", "loss")


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="search hyperparameters (depth, width, dropout, lr...) with keras-tuner",
        description=(
            "Search a model's hyperparameters with keras-tuner and write the best trial as a run "
            "folder (model.keras, saved_model/, labels.txt, best_hyperparameters.json, trials.json, "
            "tuner/). The space is a JSON file of hyperparameter -> list of choices or "
            "{'min', 'max'[, 'step', 'sampling']} range, or a preset. An interrupted search "
            "continues with --resume. See docs/tuning.md."
        ),
    )
    p.add_argument("--base", required=True, help="model name, e.g. wrn_16_2, resnet20, mobilenet_v1_025")
    p.add_argument("--data", required=True, help="folder of class sub-folders, CSV, tfds:NAME or 'sample'")
    space = p.add_mutually_exclusive_group()
    space.add_argument("--space", default=None, metavar="FILE", help="search space JSON file")
    space.add_argument(
        "--space-preset", default=None, metavar="NAME",
        help="'default' (the family's space: WRN depth/width/dropout, CIFAR ResNet depth, MobileNet "
        "alpha/dropout; used when no --space) or 'head' (head dropout, hidden layer and lr, any "
        "model; with --weights the base is frozen and its features computed once per search)",
    )
    p.add_argument("--max-trials", type=int, default=10, help="number of trials (default 10)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per trial (Hyperband: max epochs; default 10)")
    p.add_argument("--tuner", choices=TUNER_NAMES, default="random", help="keras-tuner tuner (default random)")
    p.add_argument("--objective", choices=OBJECTIVE_NAMES, default="val_accuracy", help="score to optimise (default val_accuracy)")
    p.add_argument("--out", default=None, help="run folder to create (default runs/<base>-tune-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out and any interrupted search")
    p.add_argument("--resume", action="store_true", help="continue the search saved for --out (finished trials are kept)")
    p.add_argument("--weights", default="none", help="weights of every trial: 'none' (default), a pretrained tag or a file")
    p.add_argument("--image-size", type=positive_int, default=None, help="square input side in pixels (default: the weights' or model's)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per training step")
    p.add_argument("--optimizer", default="adam", help="optimizer unless the space chooses one (default adam)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate unless the space tunes lr (default 1e-3)")
    p.add_argument("--val-split", type=float, default=0.2, help="validation fraction per class (trials are scored on it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the search and every trial")
    p.add_argument(
        "--no-augment", dest="augment", action="store_const", const=False, default=None,
        help="no random flip/rotation/zoom (the default with --weights, where the frozen base's "
        "features are then computed once per search; --augment SPEC turns it on)",
    )
    p.add_argument(
        "--feature-cache", choices=("disk", "memory", "none"), default="disk",
        help="where a frozen base's features are kept (default disk, reused by later searches and extract runs)",
    )
    p.add_argument("--feature-cache-dir", default=None, help="folder of the disk feature cache (default ~/.cache/transferkit/features)")
    p.add_argument(
        "--distribute", choices=("mirrored",), default=None,
        help="train every trial under tf.distribute.MirroredStrategy (all GPUs); chief/worker "
        "search is set by KERASTUNER_* variables (docs/tuning.md)",
    )
    p.add_argument("--executions-per-trial", type=positive_int, default=1, help="trainings per trial, averaged (less noise, more time)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_data_arguments(p)
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from transferkit import tuning

    space: Any = tuning.read_space(args.space) if args.space else args.space_preset
    try:
        result = tuning.tune(
            args.base,
            args.data,
            space,
            tuner=args.tuner,
            max_trials=args.max_trials,
            epochs=args.epochs,
            image_size=args.image_size,
            batch_size=args.batch_size,
            weights=weights_arg(args.weights),
            out=args.out,
            seed=args.seed,
            overwrite=args.overwrite,
            resume=args.resume,
            objective=args.objective,
            optimizer=args.optimizer,
            lr=args.lr,
            val_split=args.val_split,
            augment=args.augment,
            feature_cache=args.feature_cache,
            feature_cache_dir=args.feature_cache_dir,
            data_options=data_options_from_args(args),
            distribute=args.distribute,
            executions_per_trial=args.executions_per_trial,
            verbose=progress_verbosity(args.quiet),
        )
    except KeyboardInterrupt:
        print(
            "transferkit tune: interrupted; finished trials are saved, continue with the same "
            "command and --resume",
            file=sys.stderr,
        )
        return 130
    if result.out is None:
        print("transferkit tune: worker done; the chief writes the run folder")
        return 0
    print(f"transferkit tune: best {json.dumps(result.hyperparameters, sort_keys=True)} "
          f"(score {result.score:.4f}) -> {result.out}")
    return 0
