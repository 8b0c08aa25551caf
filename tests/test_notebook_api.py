"""The notebook API: ``tk.finetune(base=..., data=..., **options)`` gives the config the command
line's flags give, returns a :class:`Run` that predicts, evaluates and plots, and ``tk.load``
reopens any run folder."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit as tk
from transferkit.cli.args import config_from_args
from transferkit.cli.main import build_parser
from transferkit.data.options import DataOptions
from transferkit.runs.finetune import FinetuneConfig
from transferkit.runs.notebook import make_config

SAMPLE = Path(tk.__file__).parent / "assets" / "sample"


def _subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _other_value(action: argparse.Action) -> tuple[list[str], object]:
    """Command-line words that set ``action`` to a value other than its default, and that value."""
    flag = action.option_strings[-1]
    if isinstance(action, argparse._StoreTrueAction):
        return [flag], True
    if isinstance(action, argparse._StoreFalseAction):
        return [flag], False
    if action.choices:
        value = next(c for c in action.choices if c != action.default)
        return [flag, str(value)], value
    if action.type in (float,):
        return [flag, "0.37"], 0.37
    if action.type is not None and action.type is not str:  # ints and positive ints
        return [flag, "7"], 7
    return [flag, "chosen"], "chosen"


@pytest.mark.parametrize("command,cls", [("finetune", FinetuneConfig)])
def test_every_keyword_is_a_flag_and_both_give_the_same_config(command: str, cls: type) -> None:
    parser = _subparser(command)
    fields = {f.name for f in dataclasses.fields(cls)} - {"data_options"}
    fields |= {f.name for f in dataclasses.fields(DataOptions)}
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    special = {"weights", "class_weight", "augment_spec"}  # text the CLI translates
    for name in sorted(fields - special):
        if name not in actions:
            raise AssertionError(f"{command} has no flag for {cls.__name__}.{name}")
        words, value = _other_value(actions[name])
        from_flags = config_from_args(cls, parser.parse_args(words))
        from_keywords = make_config(cls, **{name: value})
        assert from_flags == from_keywords, name
        assert from_flags != cls(), f"{name}: the flag changed nothing"
    # The translated ones: --weights none is random init, --class-weight none is None.
    assert config_from_args(cls, parser.parse_args(["--weights", "w.h5"])) == make_config(cls, weights="w.h5")
    assert config_from_args(cls, parser.parse_args(["--class-weight", "none"])) == make_config(cls, class_weight=None)
    assert config_from_args(cls, parser.parse_args(["--class-weight", "auto"])) == make_config(cls, class_weight="auto")
    assert config_from_args(cls, parser.parse_args(["--augment", "flip"])) == make_config(cls, augment_spec="flip")


def test_unknown_keyword_names_the_closest() -> None:
    with pytest.raises(tk.ConfigError, match=r"unknown option 'fine_tune_epoch' for FinetuneConfig; did you mean 'fine_tune_epochs'\?"):
        make_config(FinetuneConfig, fine_tune_epoch=3)
    with pytest.raises(tk.ConfigError, match="unknown option 'epocs'"):
        tk.finetune(base="mobilenet_v1_025", epocs=1)


def test_load_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(tk.ConfigError, match="is not a run folder"):
        tk.load(tmp_path)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tk.Run:
    out = tmp_path_factory.mktemp("runs") / "notebook"
    return tk.finetune(
        base="mobilenet_v1_025", data="sample", out=str(out), image_size=64, epochs=1, fine_tune_epochs=1,
        batch_size=16, verbose=0,
    )


def test_keyword_run_returns_a_run_that_reopens(run: tk.Run) -> None:
    assert isinstance(run, tk.Run) and run.out is not None and (run.out / "model.keras").is_file()
    assert run.config["epochs"] == 1 and run.config["image_size"] == 64
    assert [row["phase"] for row in run.history] == ["head", "fine_tune"]
    assert run.class_names == ["ants", "bees"]
    files = sorted(str(p) for p in (SAMPLE / "bees").iterdir())[:6]
    reopened = tk.load(run.out)
    np.testing.assert_allclose(reopened.probabilities(files), run.probabilities(files), atol=1e-5)
    assert reopened.val_accuracy == run.val_accuracy == run.metrics["val_accuracy"]


def test_predict_takes_arrays_of_any_size_like_files(run: tk.Run, tmp_path: Path) -> None:
    # The same pixels as arrays and as lossless PNG files give the same probabilities: arrays go
    # through the training images' crop and resize.
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((50, 90), (120, 70), (64, 64))]
    files = []
    for i, array in enumerate(arrays):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(array).save(files[-1])
    np.testing.assert_allclose(run.probabilities(arrays), run.probabilities(files), atol=1e-4)
    ranked = run.predict(files, top_k=2)
    probs = run.probabilities(files)
    for row, p in zip(ranked, probs):
        assert [label for label, _ in row] == [run.class_names[i] for i in np.argsort(-p)[:2]]


def test_predict_takes_encoded_bytes_pil_images_grey_and_transparent_arrays(run: tk.Run, tmp_path: Path) -> None:
    """What a notebook holds (a Colab upload's bytes, PIL images, grey or RGBA arrays) gives what
    the same pixels give as files: bytes through the files' own decoder, transparency on white."""
    from transferkit.errors import DataError

    jpegs = sorted(str(p) for p in (SAMPLE / "bees").iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:3]
    as_files = run.probabilities(jpegs)
    np.testing.assert_allclose(run.probabilities([Path(f).read_bytes() for f in jpegs]), as_files, atol=1e-5)
    np.testing.assert_allclose(run.probabilities(Path(jpegs[1]).read_bytes()), as_files[1:2], atol=1e-5)

    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (60, 80, 4), dtype=np.uint8)
    grey = rng.integers(0, 256, (70, 50), dtype=np.uint8)
    pngs = [str(tmp_path / "rgba.png"), str(tmp_path / "grey.png")]
    Image.fromarray(rgba, "RGBA").save(pngs[0])
    Image.fromarray(grey, "L").save(pngs[1])
    want = run.probabilities(pngs)
    np.testing.assert_allclose(run.probabilities([Image.open(f) for f in pngs]), want, atol=1e-4)
    np.testing.assert_allclose(run.probabilities([rgba, grey]), want, atol=1e-4)
    np.testing.assert_allclose(run.probabilities(grey), want[1:], atol=1e-4)

    with pytest.raises(DataError, match=r"^image 1 \(counting from 0\) of the bytes given cannot be decoded"):
        run.predict([Path(jpegs[0]).read_bytes(), b"not an image"])
    with pytest.raises(DataError, match="no images given"):
        run.predict([])
    with pytest.raises(tk.ConfigError, match="got int"):
        run.predict(42)
    with pytest.raises(tk.ConfigError, match=r"got shape \(3, 3, 5\)"):
        run.predict(np.zeros((3, 3, 5), np.uint8))


def test_front_door_predict_and_evaluate_take_a_run_folder(run: tk.Run) -> None:
    files = sorted(str(p) for p in (SAMPLE / "ants").iterdir())[:4]
    assert tk.predict(str(run.out), files, top_k=2) == run.predict(files, top_k=2)
    assert tk.evaluate(run.out) == run.evaluate()
    assert callable(tk.tune) and tk.tune.__module__ == "transferkit.tuning.search"


def test_evaluate_scores_the_held_out_split_like_the_run(run: tk.Run) -> None:
    metrics = run.evaluate()
    assert metrics["num_images"] == run.metrics["num_val"]
    assert abs(metrics["accuracy"] - run.val_accuracy) < 1e-6


def test_plot_and_notebook_display(run: tk.Run) -> None:
    plot = run.plot()
    assert [ax.get_title() for ax in plot.figure.axes] == ["loss", "accuracy"]
    assert plot._repr_png_().startswith(b"\x89PNG")
    page = run._repr_html_()
    assert f"{run.val_accuracy:.4f}" in page and "<table>" in page and "fine_tune" in page
