"""docs/quickstart.ipynb runs top to bottom offline on the embedded sample, in a real Jupyter
kernel, and shows what it says it shows."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "quickstart.ipynb"


def test_quickstart_notebook_runs_and_shows_its_results(
    tmp_path: Path, empty_keras_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")
    pytest.importorskip("ipykernel", reason="the test extra installs ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    root = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))  # the kernel's
    nbclient.NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    cells = [c for c in notebook.cells if c.cell_type == "code"]
    for cell in cells:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    outputs = {cell.source.splitlines()[-1]: cell.outputs for cell in cells}

    run = tmp_path / "runs" / "quickstart"
    metrics = json.loads((run / "metrics.json").read_text())
    shown = [o for o in outputs["run"] if o.output_type == "execute_result"][0]
    assert f"{metrics['val_accuracy']:.4f}" in shown.data["text/html"]  # the Run's HTML card
    history = [o for o in outputs["run.history"] if o.output_type == "execute_result"][0]
    assert history.data["text/html"].count("<tr>") == 1 + 3  # header + 2 head epochs + 1 fine-tune epoch
    plot = [o for o in outputs["run.plot()"] if o.output_type in ("display_data", "execute_result")]
    assert any("image/png" in o.data for o in plot)  # an inline figure
    evaluated = [o for o in outputs["run.evaluate()  # the run's held-out validation images"] if o.output_type == "execute_result"][0]
    assert abs(ast.literal_eval(evaluated.data["text/plain"])["accuracy"] - metrics["val_accuracy"]) < 1e-6
    reopened = [o for o in outputs["again.val_accuracy, again.class_names"] if o.output_type == "execute_result"][0]
    assert reopened.data["text/plain"] == repr((metrics["val_accuracy"], ["ants", "bees"]))
