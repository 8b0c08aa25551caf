"""``transferkit lr-find``: a learning-rate range test of one phase of a fine-tuning run (see
:mod:`transferkit.transfer.lr_find`), on the run's own data and model; writes the curve and its
plot, and suggests a rate.

The folder holds ``lr_find.png`` (smoothed loss against the rate, suggestions marked),
``lr_find.csv`` (step, lr, loss, smoothed_loss) and ``lr_find.json`` (the suggestions and the
settings).
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
import keras

from transferkit.errors import ConfigError
from transferkit.models import build_model, get_model_info
from transferkit.runs import common
from transferkit.runs.config import FinetuneConfig, LRFindConfig
from transferkit.runs.finetune import PHASES, check, range_test
from transferkit.runs.folder import check_out_dir, default_out, run_folder, write_json
from transferkit.transfer.lr_find import Curve, check_range


@dataclass
class LRFindResult:
    """A range test's folder, curve and suggested rates."""

    out: Path
    curve: Curve

    @property
    def suggestion(self) -> float:
        return self.curve.suggestion

    @property
    def steepest(self) -> float:
        return self.curve.steepest

    @property
    def valley(self) -> float:
        return self.curve.valley

    def __repr__(self) -> str:
        return f"LRFindResult({str(self.out)!r}, suggestion={self.suggestion:.3g}, steepest={self.steepest:.3g})"

    def _repr_png_(self) -> bytes:  # the plot, inline in a notebook
        return (self.out / "lr_find.png").read_bytes()


def lr_find(config: FinetuneConfig, find: LRFindConfig, verbose: int = 1) -> LRFindResult:
    """Runs a learning-rate range test of ``find.phase`` of ``config``'s fine-tuning recipe and
    writes its folder.

    Args:
        config: The fine-tuning run to test (model, data, unfreezing, optimizer); its ``lr``,
            ``epochs`` and schedule matter only for ``phase="fine_tune"`` (phase 1 trains first).
        find: The range, steps, phase and output folder.
        verbose: 0 for silence, 1 for transferkit's log lines.

    Returns:
        The folder, the curve and its suggestions.
    """
    from transferkit.data import load_data
    from transferkit.inference.report import plot_lr_curve

    check_range(find.start_lr, find.end_lr, find.steps)
    if find.phase not in PHASES:
        raise ConfigError(f"phase must be one of {', '.join(PHASES)}, got {find.phase!r}")
    if find.phase == "fine_tune" and config.lr == "auto":
        raise ConfigError("--phase fine_tune trains the head first at --lr: give it a number, not 'auto'")
    if config.distribute:
        raise ConfigError("lr-find runs on one device; drop --distribute")
    size = check(config)
    out = check_out_dir(find.out or default_out(get_model_info(config.base).name, "lr-find"), find.overwrite)
    log = common.logger(verbose)
    with common.strategy_scope(None, config.mixed_precision):
        data = load_data(
            config.data, size, config.batch_size, config.val_split, config.seed, config.augment,
            channels=config.channels or get_model_info(config.base).input_shape[2], **config.data_options.kwargs(),
        )
        keras.utils.set_random_seed(config.seed)
        model = build_model(config.base, data.num_classes, config.weights, size, config.channels, dropout=config.dropout)
        common.announce(log, config.base, config.weights, data, size, None, None)
        log(
            f"transferkit: range test of phase {find.phase}, lr {find.start_lr:g} to {find.end_lr:g} "
            f"over {find.steps} batches"
        )
        curve = range_test(model, data, config, find.phase, find.start_lr, find.end_lr, find.steps)
    suggestions = {"valley (suggested)": curve.valley, "steepest": curve.steepest}
    with run_folder(out) as tmp:
        plot_lr_curve(curve.lrs, curve.smoothed, suggestions).savefig(tmp / "lr_find.png", dpi=100)
        with open(tmp / "lr_find.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", "lr", "loss", "smoothed_loss"])
            writer.writeheader()
            writer.writerows(curve.rows())
        settings = {**dataclasses.asdict(find), "out": str(out), "finetune": dataclasses.asdict(config)}
        write_json(tmp / "lr_find.json", {**curve.summary(), "settings": settings})
    return LRFindResult(out, curve)
