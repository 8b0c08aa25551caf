"""Recipes: experiments as data. A TOML file lists variants (a base model and settings each) over
shared settings; :func:`run_recipe` runs them one after another through the ``train``,
``finetune`` and ``extract`` runs, skipping finished variants on a rerun, and writes
``results.csv``, ``results.md`` and ``val_curves.png``.

Recipes are parsed with ``tomllib`` and checked key by key before anything runs; never executed.
The format::

    title = "..."            # required
    paper = "..."            # citation of the claim (optional)
    claim = "..."            # what the paper found (optional)
    [settings]               # shared by every variant: any field of the mode's config
    data = "digits"
    [smoke]                  # what --smoke changes (tiny data, few steps), in every variant
                             # whose mode has the key
    epochs = 1
    [[variants]]             # one per run: name, base, mode (train|finetune|extract), settings
    name = "resnet-20"
    base = "resnet20"
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferkit.data.options import DataOptions
from transferkit.errors import ConfigError
from transferkit.models import get_model_info
from transferkit.runs.extract import ExtractConfig, extract
from transferkit.runs.finetune import FinetuneConfig, finetune
from transferkit.runs.folder import DEFAULT_ROOT, open_run, write_json
from transferkit.runs.train import TrainConfig, resolve_schedule, train

TOP_KEYS = ("title", "paper", "claim", "settings", "smoke", "variants")
VARIANT_KEYS = ("name", "base", "mode")
MODES = {"train": (TrainConfig, train), "finetune": (FinetuneConfig, finetune), "extract": (ExtractConfig, extract)}
NOT_SETTINGS = ("base", "out", "overwrite", "resume", "data_options")
COLUMNS = ("variant", "base", "mode", "params", "val_accuracy", "best_val_accuracy", "train_accuracy", "epochs", "seconds")


@dataclass
class Variant:
    name: str
    base: str
    mode: str
    settings: dict[str, Any]


@dataclass
class Recipe:
    title: str
    paper: str
    claim: str
    variants: list[Variant]
    path: Path


def _line(text: str, key: str) -> int:
    """The first line of ``text`` that sets ``key`` (0 when none does)."""
    pattern = re.compile(rf"(^|[{{,\s]){re.escape(key)}\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line.split("#", 1)[0]):
            return number
    return 0


def _where(path: Path, text: str, key: str) -> str:
    line = _line(text, key)
    return f"{path.name}, line {line}" if line else path.name


def setting_types(mode: str) -> dict[str, str]:
    """Setting name -> its annotation, for a variant of ``mode``: the config's fields and the data
    options'."""
    cls = MODES[mode][0]
    fields = {f.name: str(f.type) for f in dataclasses.fields(cls) if f.name not in NOT_SETTINGS}
    fields.update({f.name: str(f.type) for f in dataclasses.fields(DataOptions)})
    return fields


def _types(annotation: str) -> tuple[type, ...]:
    """The TOML value types an annotation such as ``float | None`` or ``tuple[int, ...]`` takes."""
    kinds: list[type] = []
    depth, part, parts = 0, "", []
    for ch in annotation:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += ch
    parts.append(part)
    for head in (p.strip().split("[")[0] for p in parts):
        kinds += {"bool": [bool], "int": [int], "float": [int, float], "str": [str], "dict": [dict],
                  "tuple": [list], "list": [list], "Any": [object]}.get(head, [])
    return tuple(kinds)


def _check_value(path: Path, text: str, key: str, value: Any, annotation: str) -> Any:
    kinds = _types(annotation)
    wrong = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    if wrong:
        names = " or ".join(sorted({k.__name__.replace("list", "array").replace("dict", "table") for k in kinds}))
        raise ConfigError(
            f"{_where(path, text, key)}: {key} must be {names} ({annotation}), got {type(value).__name__} {value!r}"
        )
    return tuple(value) if isinstance(value, list) and "tuple" in annotation else value


def _check_table(path: Path, text: str, table: Any, mode: str, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{_where(path, text, where)}: {where} must be a table")
    types = setting_types(mode)
    out = {}
    for key, value in table.items():
        if key not in types:
            raise ConfigError(
                f"{_where(path, text, key)}: unknown key {key!r} in {where} (mode {mode}); valid keys: "
                f"{', '.join(sorted(types))}"
            )
        out[key] = _check_value(path, text, key, value, types[key])
    return out


def parse_set(item: str, flag: str = "--set") -> tuple[str, Any]:
    """``key=value`` (``--set``, ``--model-option``); the value is read as TOML (``2``, ``0.1``,
    ``true``, ``"x"``), else as text."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} takes key=value, got {item!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


def load_recipe(path: str | Path, sets: Sequence[str] = (), smoke: bool = False) -> Recipe:
    """Reads and checks a recipe; ``sets`` (``key=value``) override a key the recipe sets (in its
    settings and variants), ``smoke`` applies its ``[smoke]`` table over everything.

    Raises:
        ConfigError: not TOML, an unknown key or a wrong type (with its line and the valid
            keys), an unknown base, mode or schedule, or ``--set`` on a key the recipe lacks.
    """
    path = Path(path)
    if not path.is_file():
        found = Path("recipes") / f"{path.name}.toml"
        if path.suffix or not found.is_file():
            raise ConfigError(f"no recipe {str(path)!r}; give a .toml file (see recipes/)")
        path = found
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path.name} is not valid TOML ({err}); recipes are TOML files") from None
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(f"{_where(path, text, key)}: unknown key {key!r}; valid keys: {', '.join(TOP_KEYS)}")
    if not isinstance(raw.get("title"), str):
        raise ConfigError(f"{path.name}: a recipe needs a title = \"...\"")
    variants = raw.get("variants")
    if not isinstance(variants, list) or not variants or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"{path.name}: a recipe needs at least one [[variants]] table")
    overrides = dict(parse_set(item) for item in sets)
    present = set(raw.get("settings", {})) | {k for v in variants for k in v}
    for key in overrides:
        if key not in present:
            raise ConfigError(
                f"--set {key}: {path.name} sets no key {key!r}; keys it sets: {', '.join(sorted(present))}"
            )
    smoke_table = raw.get("smoke", {}) if smoke else {}
    if not isinstance(smoke_table, dict):
        raise ConfigError(f"{_where(path, text, 'smoke')}: smoke must be a table")
    every = set().union(*(setting_types(m) for m in MODES))
    for key in smoke_table:
        if key not in every:
            raise ConfigError(
                f"{_where(path, text, key)}: unknown key {key!r} in smoke; valid keys: {', '.join(sorted(every))}"
            )
    names: set[str] = set()
    out = []
    for variant in variants:
        for key in VARIANT_KEYS[:2]:
            if not isinstance(variant.get(key), str):
                raise ConfigError(f"{_where(path, text, 'variants')}: every variant needs {key} = \"...\"")
        name, base, mode = variant["name"], variant["base"], variant.get("mode", "train")
        if mode not in MODES:
            raise ConfigError(f"{_where(path, text, 'mode')}: variant {name!r} has mode {mode!r}; valid: {', '.join(MODES)}")
        if name in names or not re.fullmatch(r"[\w.+-]+", name):
            raise ConfigError(f"{path.name}: variant names must be unique words (letters, digits, - . + _), got {name!r}")
        names.add(name)
        try:
            base = get_model_info(base).name
        except ConfigError as err:
            raise ConfigError(f"{_where(path, text, 'base')}: variant {name!r}: {err}") from None
        own = {k: v for k, v in variant.items() if k not in VARIANT_KEYS}
        settings = {**raw.get("settings", {}), **own}
        settings.update({k: v for k, v in overrides.items() if k in settings})
        if "base" in overrides:
            base = get_model_info(str(overrides["base"])).name
        settings.update({k: v for k, v in smoke_table.items() if k in setting_types(mode)})
        checked = _check_table(path, text, settings, mode, f"variant {name!r}")
        config = make_config(mode, base, checked, Path("unused"))
        if mode == "train":
            try:
                resolve_schedule(config)
            except ConfigError as err:
                raise ConfigError(f"{_where(path, text, 'schedule')}: variant {name!r}: {err}") from None
        out.append(Variant(name, base, mode, checked))
    return Recipe(raw["title"], raw.get("paper", ""), raw.get("claim", ""), out, path)


def make_config(mode: str, base: str, settings: dict[str, Any], out: Path) -> Any:
    """The run config of one variant (its data options gathered from the flat settings)."""
    cls = MODES[mode][0]
    data_keys = {f.name for f in dataclasses.fields(DataOptions)}
    options = DataOptions(**{k: v for k, v in settings.items() if k in data_keys})
    values = {k: v for k, v in settings.items() if k not in data_keys}
    extra = {"resume": True} if mode != "extract" else {}
    return cls(base=base, out=str(out), overwrite=False, data_options=options, **extra, **values)


def _row(variant: Variant, folder: Path, seconds: float | None) -> dict[str, Any]:
    """One results row, from the variant's run folder."""
    opened = open_run(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    history = opened.history or []
    vals = [float(r["val_accuracy"]) for r in history if r.get("val_accuracy") not in (None, "")]
    trains = [float(r["accuracy"]) for r in history if r.get("accuracy") not in (None, "")]
    return {
        "variant": variant.name,
        "base": variant.base,
        "mode": variant.mode,
        "params": opened.model.count_params(),
        "val_accuracy": float(metrics["val_accuracy"]),
        "best_val_accuracy": max(vals) if vals else float(metrics["val_accuracy"]),
        "train_accuracy": trains[-1] if trains else float("nan"),
        "epochs": len(history),
        "seconds": seconds,
        "val_curve": vals,
    }


def run_recipe(
    path: str | Path, out: str | Path | None = None, sets: Sequence[str] = (), smoke: bool = False, verbose: int = 1
) -> list[dict[str, Any]]:
    """Runs every variant of a recipe (those already finished in ``out`` are skipped) and writes
    ``results.csv``, ``results.md`` and ``val_curves.png`` in ``out`` (default
    ``runs/recipes/<recipe>[-smoke]``). Returns the results rows."""
    recipe = load_recipe(path, sets, smoke)
    folder = Path(out or Path(DEFAULT_ROOT) / "recipes" / (recipe.path.stem + ("-smoke" if smoke else ""))).expanduser()
    (folder / "variants").mkdir(parents=True, exist_ok=True)
    write_json(folder / "recipe.json", {"recipe": str(recipe.path), "set": list(sets), "smoke": smoke})
    rows = []
    for n, variant in enumerate(recipe.variants, start=1):
        run_dir = folder / "variants" / variant.name
        done = folder / "variants" / f"{variant.name}.json"
        if done.is_file():
            rows.append(json.loads(done.read_text()))
            if verbose:
                print(f"transferkit run: {variant.name} finished before, skipped ({n}/{len(recipe.variants)})")
            continue
        if verbose:
            print(f"transferkit run: {variant.name} ({variant.base}, {variant.mode}) ({n}/{len(recipe.variants)})")
        seconds = None
        if not (run_dir / "metrics.json").is_file():  # else it finished but its row was not written
            start = time.perf_counter()
            MODES[variant.mode][1](make_config(variant.mode, variant.base, variant.settings, run_dir), verbose)
            seconds = time.perf_counter() - start
        row = _row(variant, run_dir, seconds)
        write_json(done, row)
        rows.append(row)
    write_results(folder, recipe, rows, smoke)
    return rows


def write_results(folder: Path, recipe: Recipe, rows: list[dict[str, Any]], smoke: bool) -> None:
    """``results.csv``, ``results.md`` (a table) and ``val_curves.png`` (validation accuracy per epoch)."""
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    def number(value: Any, digits: int) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    lines = [
        f"# {recipe.title}{' (smoke run)' if smoke else ''}",
        "",
        *([f"Paper: {recipe.paper}", ""] if recipe.paper else []),
        "| variant | base | mode | parameters | final val acc | best val acc | train acc | epochs | time (s) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['base']} | {r['mode']} | {r['params']:,} | {number(r['val_accuracy'], 4)} | "
            f"{number(r['best_val_accuracy'], 4)} | {number(r['train_accuracy'], 4)} | {r['epochs']} | "
            f"{number(r['seconds'], 0)} |"
        )
    (folder / "results.md").write_text("\n".join(lines) + "\n")
    from transferkit.inference.report import plot_val_curves

    fig = plot_val_curves({r["variant"]: r.get("val_curve") or [] for r in rows}, recipe.title)
    fig.savefig(folder / "val_curves.png", dpi=100)
