"""The package's layout rules that import-linter cannot see: no module uses another module's
underscore names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "transferkit"


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found: list[str] = []
    modules: set[str] = set()  # local names bound to transferkit modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transferkit"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("transferkit"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_underscore_names() -> None:
    uses = {str(p.relative_to(PACKAGE)): _private_uses(p) for p in PACKAGE.rglob("*.py")}
    assert {path: names for path, names in uses.items() if names} == {}


def test_the_check_finds_a_private_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from transferkit.data import _hidden\nfrom transferkit import runs\nruns._secret()\n")
    assert _private_uses(sample) == ["from transferkit.data import _hidden", "runs._secret"]
