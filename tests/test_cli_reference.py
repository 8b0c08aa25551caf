"""The command line explains itself: every option has help text (its default shown), every
command's help ends with examples that parse, exit codes are in --help and the README, a misspelt
command or option suggests the closest, and docs/cli.md is the parser's own help."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from transferkit.cli import main
from transferkit.cli.main import build_parser
from transferkit.cli.reference import markdown

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_docs_cli_md_is_the_parsers_help() -> None:
    assert (ROOT / "docs" / "cli.md").read_text() == markdown(), (
        "docs/cli.md is stale: run `python -m transferkit.cli.reference > docs/cli.md`"
    )


def test_every_option_has_help_and_every_command_examples_that_parse() -> None:
    parser = build_parser()
    commands = _commands()
    listed = parser.format_help()
    for name, command in commands.items():
        assert f"    {name} " in listed  # the top-level help lists it with its one line
        for action in command._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert action.help, f"transferkit {name} {action.option_strings[0]} has no help text"
        assert command.epilog and "examples:" in command.epilog, f"transferkit {name} --help has no examples"
        examples = [line.strip() for line in command.epilog.split("examples:")[1].splitlines() if line.strip().startswith("transferkit ")]
        assert 2 <= len(examples) <= 3, name
        for example in examples:
            args = parser.parse_args(shlex.split(example)[1:])  # a usage error would exit here
            assert args.command == name


def test_exit_codes_are_documented() -> None:
    for text in (build_parser().format_help(), (ROOT / "README.md").read_text()):
        assert "exit codes" in text.lower().replace("exit codes:", "exit codes")
        for code in ("0", "1", "2"):
            assert f" {code} " in text


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["finetun"], "did you mean 'finetune'?"),
        (["models", "--famly", "resnet"], "did you mean '--family'?"),
        (["finetune", "--fine-tune-epoch", "3"], "did you mean '--fine-tune-epochs'?"),
    ],
)
def test_misspelt_command_or_option_suggests_the_closest(argv: list[str], expect: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err


def test_train_help_names_every_schedule() -> None:
    from transferkit.transfer.schedules import SCHEDULES

    # argparse wraps lines at hyphens too ("one-" / "cycle").
    help_text = " ".join(_commands()["train"].format_help().split()).replace("- ", "-")
    assert f"training preset: {', '.join(list(SCHEDULES)[:-1])} or {list(SCHEDULES)[-1]} " in help_text
