"""``transferkit models``: the list prints the package's pinned counts without building anything
(tests/test_zoo.py builds every name against the same pins), filters by pattern, family and
weights, and one model's card shows the stages and blocks ``--unfreeze-from`` takes."""

from __future__ import annotations

import re

import pytest

import transferkit as tk
from transferkit.cli import main
from transferkit.models import factory
from transferkit.models.registry import parameter_counts

ROW = re.compile(r"^(\S+)\s+(\S+)\s+([\d,]+|-)\s+(\d+x\d+x\d+)\s+(\S+)$")


def _rows(out: str) -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in out.splitlines()[1:]:
        match = ROW.match(line)
        assert match, line
        rows[match.group(1)] = (match.group(2), match.group(3), match.group(5))
    return rows


def test_list_prints_every_pinned_count_and_builds_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("`transferkit models` built a model")

    monkeypatch.setattr(factory, "create_model", no_build)
    monkeypatch.setattr(factory, "create_backbone", no_build)
    assert main(["models"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert set(rows) == set(tk.list_models())
    pins = parameter_counts()
    assert {name: int(params.replace(",", "")) for name, (_, params, _) in rows.items()} == pins
    for name, (family, _, pretrained) in rows.items():
        assert family == tk.get_model_info(name).family
        assert (pretrained != "-") == bool(tk.list_models(name, pretrained=True))


def test_filters_by_pattern_family_and_pretrained(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--family", "wide_resnet"]) == 0
    wrn = _rows(capsys.readouterr().out)
    assert "wrn_16_4" in wrn and "wide_resnet50_2" in wrn and "resnet50" not in wrn
    assert set(wrn) == {n for n in tk.list_models() if tk.get_model_info(n).family == "wide_resnet"}

    assert main(["models", "--pretrained", "--filter", "mobilenet*"]) == 0
    assert set(_rows(capsys.readouterr().out)) == {"mobilenet_v1_025", "mobilenet_v1_050", "mobilenet_v1_075", "mobilenet_v1_100"}

    assert main(["models", "vgg_*"]) == 0  # a positional pattern filters too
    assert set(_rows(capsys.readouterr().out)) == {n for n in tk.list_models() if n.startswith("vgg_")}


def test_unknown_family_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--family", "resnett"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown family 'resnett'" in err[0] and "resnet" in err[0]


def test_card_shows_the_papers_stages_and_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    # ResNet-20 for CIFAR (He et al. 2015, section 4.2): 6n + 2 layers, n = 3 blocks in each of
    # three stages.
    assert main(["models", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert f"{parameter_counts()['resnet20']:,}" in out
    for stage in (1, 2, 3):
        assert re.search(rf"^\s+stage{stage}\s+stage{stage}_block1 \.\. stage{stage}_block3 \(3 blocks\)$", out, re.M)
    assert "stage4" not in out
    assert "none: train it from scratch" in out


def test_card_names_the_weights_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "resnet50"]) == 0
    out = capsys.readouterr().out
    record = tk.models.weights.get_record("resnet50", "imagenet")
    assert record.file_name in out and record.url in out


def test_card_of_an_unknown_name_suggests_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "resnt50"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'resnt50'" in err[0] and "resnet50" in err[0]
