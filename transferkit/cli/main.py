"""The ``transferkit`` command line.

One module per command group in this package defines ``add_commands(subparsers)``, registering
subparsers whose ``func(args) -> int`` runs the command; the work itself is library code. A user
mistake (any :class:`~transferkit.errors.TransferkitError`, or a usage error) prints one line and
exits 2; an internal error prints one line naming a log file that holds the traceback, and exits 1.

TensorFlow's native start-up logs are filtered out of stderr unless ``--verbose`` is given
(anywhere on the command line); see :mod:`transferkit.cli.console`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

COMMAND_MODULES = (
    "transferkit.cli.train",
    "transferkit.cli.inference",
    "transferkit.cli.data",
    "transferkit.cli.tune",
    "transferkit.cli.models",
    "transferkit.cli.export",
    "transferkit.cli.recipes",
)


EXIT_CODES = (
    "exit codes: 0 done; 1 internal error (one line names a log file with the traceback); "
    "2 a mistake in the input (one line says what was wrong and what to do; nothing is written)"
)

# Two or three examples at the end of each command's --help (and in docs/cli.md).
EXAMPLES = {
    "finetune": (
        "transferkit finetune --data ./photos",
        "transferkit finetune --base resnet50 --data ./photos --epochs 5 --fine-tune-epochs 10 --unfreeze-from stage4",
        "transferkit finetune --data labels.csv --image-size 160 --out runs/mine",
    ),
    "lr-find": (
        "transferkit lr-find --data ./photos",
        "transferkit lr-find --data ./photos --phase fine_tune --unfreeze-from stage4 --out runs/lr",
        "transferkit lr-find --base resnet50 --data ./photos --start-lr 1e-6 --end-lr 1 --steps 50",
    ),
    "extract": (
        "transferkit extract --data ./photos",
        "transferkit extract --base efficientnet_b0 --data tfds:oxford_flowers102 --hidden-units 256",
    ),
    "train": (
        "transferkit train --base lenet5 --data digits",
        "transferkit train --base resnet20 --data ./photos --schedule resnet-cifar --augment cifar --epochs 160",
        "transferkit train --base wrn_16_4 --data ./photos --schedule wrn --dropout 0.3",
    ),
    "run": (
        "transferkit run resnet_degradation --smoke",
        "transferkit run recipes/vgg_depth.toml --set epochs=30 --out runs/vgg",
    ),
    "predict": (
        "transferkit predict photo.jpg more_photos/",
        "transferkit predict --model runs/mine new_photos/ --top-k 3 --output predictions.csv",
    ),
    "evaluate": (
        "transferkit evaluate --model runs/mine",
        "transferkit evaluate --model runs/mine --data ./other_photos --report report/",
        "transferkit evaluate --data ./photos --map cat=tabby+tiger_cat,dog=golden_retriever",
    ),
    "doctor": (
        "transferkit doctor --data ./photos",
        "transferkit doctor --data ./photos --near-duplicates --labels --out doctor/",
        "transferkit doctor --data labels.csv --out doctor.json",
    ),
    "tune": (
        "transferkit tune --base resnet20 --data ./photos --max-trials 10",
        "transferkit tune --base mobilenet_v1_025 --data ./photos --space-preset head",
    ),
    "export": (
        "transferkit export runs/mine --format tflite",
        "transferkit export runs/mine --format tflite --quantize int8 --out mine-int8/",
        "transferkit export runs/mine --format onnx",
    ),
    "models": (
        "transferkit models --family resnet",
        "transferkit models --pretrained",
        "transferkit models resnet50",
    ),
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that ends every option with its default, unless the text already gives it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
            or isinstance(action, (argparse._VersionAction, argparse._HelpAction))
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other user error, and
    suggest the closest command or option for a misspelt one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        kwargs.setdefault("allow_abbrev", False)  # a misspelt option is an error with a suggestion, not a guess
        super().__init__(*args, **kwargs)
        self._argv: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}{self._closest(message)} (see '{self.prog} --help')\n")

    def _closest(self, message: str) -> str:
        import difflib
        import re

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            names = re.findall(r"'?([\w-]+)'?", choice.group(2))
            close = difflib.get_close_matches(choice.group(1), names, n=1)
            return f"; did you mean {close[0]!r}?" if close else ""
        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        if unknown and unknown.group(1).startswith("--"):
            options = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            for sub in self._actions:
                if isinstance(sub, argparse._SubParsersAction):  # the given command's own options
                    given = [sub.choices[w] for w in self._argv if w in sub.choices][:1]
                    options += [o for p in given for a in p._actions for o in a.option_strings if o.startswith("--")]
            close = difflib.get_close_matches(unknown.group(1).split("=")[0], sorted(set(options)), n=1)
            return f"; did you mean {close[0]!r}?" if close else ""
        return ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="transferkit",
        description="Transfer learning on images with Keras 3: fine-tune, extract, evaluate, export.",
        epilog=EXIT_CODES + "\n\nexamples:\n  transferkit finetune --data ./photos\n  transferkit models --family resnet\n"
        "  transferkit COMMAND --help",
    )
    from transferkit._version import __version__

    parser.add_argument("--version", action="version", version=f"transferkit {__version__}")
    parser.add_argument(
        "--verbose", action="store_true",
        help="show TensorFlow's native logs (hidden by default); may be given anywhere on the line",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    for name, command in sub.choices.items():
        if name in EXAMPLES and not command.epilog:
            command.epilog = "examples:\n" + "".join(f"  {line}\n" for line in EXAMPLES[name]) + "\n" + EXIT_CODES
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``transferkit`` console script; returns the exit code."""
    from transferkit.cli.console import native_logs_filtered

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    if verbose:
        argv = [a for a in argv if a != "--verbose"]
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_logs_filtered(not verbose):
        return _run(argv)


def _run(argv: list[str]) -> int:
    from transferkit.errors import TransferkitError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # a usage error (one line, 2), or --help / --version (0)
        return done.code if isinstance(done.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except TransferkitError as err:
        print(f"transferkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"transferkit {args.command}: interrupted; no run folder was written (rerun the same command to "
            "resume an interrupted training run)",
            file=sys.stderr,
        )
        return 130
    except Exception as err:  # noqa: BLE001 - every other error is ours: one line and a log
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        what = f"internal error ({type(err).__name__}{': ' + reason if reason else ''})"
        try:
            where = f"the traceback is in {_write_log(args.command, argv)}"
        except OSError as log_err:
            where = f"no log could be written ({log_err})"
        print(f"transferkit {args.command}: {what}; {where}; please report it", file=sys.stderr)
        return 1


def _write_log(command: str, argv: Sequence[str]) -> str:
    """Writes the command and the current exception's traceback to a new log file in
    ``$TRANSFERKIT_LOG_DIR`` (default: the temporary folder's ``transferkit-logs``); returns its path."""
    import shlex
    import tempfile
    import time
    import traceback

    folder = os.environ.get("TRANSFERKIT_LOG_DIR") or os.path.join(tempfile.gettempdir(), "transferkit-logs")
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(f"transferkit {shlex.join(argv)}\n\n{traceback.format_exc()}")
    return path


if __name__ == "__main__":
    sys.exit(main())
