"""The ``models`` command: the registry's models, and one model's card."""

from __future__ import annotations

import argparse
from typing import Any

_WILDCARDS = set("*?[")


def add_commands(sub: Any) -> None:
    m = sub.add_parser(
        "models",
        help="list registered models, or show one model's card",
        description=(
            "Without NAME: every registered model with its parameter count, default input size and "
            "pretrained weights (counts are pinned in the package: nothing is built). With a model "
            "NAME: its card (paper, stages and blocks for --unfreeze-from, parameters, input, "
            "preprocessing, weights files and their URLs)."
        ),
        epilog=(
            "examples:\n"
            "  transferkit models --family resnet\n"
            "  transferkit models --pretrained\n"
            "  transferkit models resnet50"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument(
        "name", nargs="?", default=None,
        help="a model name for its card, or a shell-style pattern such as 'resnet*' (default: list all)",
    )
    m.add_argument("--filter", default="*", metavar="PATTERN", help="list names matching PATTERN, e.g. 'wrn_*' (default: all)")
    m.add_argument("--family", default=None, help="list one family's models, e.g. resnet (default: every family)")
    m.add_argument("--pretrained", action="store_true", help="list only models with pretrained weights (default: off)")
    m.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    if args.name is not None and not _WILDCARDS & set(args.name):
        return _card(args.name)
    from transferkit.errors import ConfigError
    from transferkit.models import get_model_info, list_models
    from transferkit.models.registry import parameter_counts
    from transferkit.models.weights import pretrained_tags

    pattern = args.name if args.name is not None else args.filter
    names = list_models(pattern, pretrained=args.pretrained)
    if args.family is not None:
        families = {get_model_info(n).family for n in list_models()}
        if args.family.lower() not in families:
            raise ConfigError(f"unknown family {args.family!r}; families: {', '.join(sorted(families))}")
        names = [n for n in names if get_model_info(n).family == args.family.lower()]
    counts = parameter_counts()
    print(f"{'name':<24} {'family':<14} {'params':>13} {'input':>11}  pretrained")
    for name in names:
        info = get_model_info(name)
        params = f"{counts[name]:,}" if name in counts else "-"
        h, w, c = info.input_shape
        print(f"{name:<24} {info.family:<14} {params:>13} {f'{h}x{w}x{c}':>11}  {','.join(pretrained_tags(name)) or '-'}")
    if not names:
        print("(no model matches; run `transferkit models` for every name)")
    return 0


def _card(name: str) -> int:
    """Prints one model's card; its stages and blocks come from a headless build at the smallest
    input the architecture takes (layer names do not depend on the input size)."""
    from transferkit.models import create_backbone, get_model_info
    from transferkit.models.registry import aliases_of, parameter_counts
    from transferkit.models.weights import get_record, pretrained_tags
    from transferkit.transfer import block_names, stage_names

    info = get_model_info(name)
    h, w, c = info.input_shape
    count = parameter_counts().get(info.name)
    params = f"{count:,}" if count is not None else f"{_built_count(info.name):,}"
    lines = [
        f"{info.name}" + (f" (aliases: {', '.join(aliases_of(info.name))})" if aliases_of(info.name) else ""),
        f"  family         {info.family} (transferkit/models/{info.family}.py)",
        f"  paper          {info.paper or '-'}",
        f"  parameters     {params} with a {info.paper_classes}-class classifier"
        + (f" (paper: {info.paper_params:,})" if info.paper_params else ""),
        f"  input          {h}x{w}x{c}" + (" only" if info.fixed_input else f" (any size from {info.min_size}x{info.min_size})"),
        f"  preprocessing  {info.preprocessing} (inside the model: feed raw 0-255 pixels)",
    ]
    side = h if info.fixed_input else max(info.min_size, 32)
    backbone = create_backbone(info.name, input_shape=(side, side if not info.fixed_input else w, c))
    blocks = block_names(backbone)
    lines.append("  stages         (--unfreeze-from STAGE or a block; --unfreeze-last N counts blocks)")
    for stage in stage_names(backbone):
        inside = [b for b in blocks if b.startswith(stage + "_")]
        shown = f"{inside[0]} .. {inside[-1]} ({len(inside)} blocks)" if len(inside) > 2 else ", ".join(inside)
        lines.append(f"    {stage:<12} {shown or '-'}")
    tags = pretrained_tags(info.name)
    lines.append("  weights        " + ("none: train it from scratch" if not tags else "(--weights TAG; files are cached in ~/.keras/models)"))
    for tag in tags:
        record = get_record(info.name, tag)
        where = "bundled with transferkit" if record.bundled else record.url
        lines.append(
            f"    {tag:<12} {record.file_name}, {record.input_size}px, {record.preprocessing} preprocessing, "
            f"{record.licence}; {where}"
        )
    print("\n".join(lines))
    return 0


def _built_count(name: str) -> int:
    """The parameter count of a name no pin covers (a pattern family's other members)."""
    from transferkit.models import create_model

    return create_model(name).count_params()
