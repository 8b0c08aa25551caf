"""The docs name every registered model, with the counts the tests pin."""

from __future__ import annotations

import re
from pathlib import Path

import transferkit as tk
from transferkit.models.registry import parameter_counts

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_models_doc_lists_every_model_with_its_pinned_count() -> None:
    overview = (DOCS / "models.md").read_text().split("\n## ")[0]
    table = {
        m.group(1): int(m.group(2).replace(",", ""))
        for m in re.finditer(r"^\| `([a-z0-9_]+)` \| [a-z_]+ \| ([\d,]+) \|", overview, re.M)
    }
    pinned = parameter_counts()
    assert set(table) == set(tk.list_models())
    assert table == {name: pinned[name] for name in table}
