"""demo/demo.ipynb runs from top to bottom on CPU, offline, and is committed without outputs.

The notebook is executed on an in-memory copy with nbclient (the `python3` kernel of the environment running the
tests), in a temporary working directory, so nothing in the repository is written to.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "demo" / "demo.ipynb"


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells, "the demo notebook has no code cells"
    dirty = [i for i, cell in enumerate(code_cells) if cell.get("outputs") or cell.get("execution_count")]
    assert not dirty, f"code cells {dirty} carry outputs: clear them before committing"


@pytest.mark.slow
def test_notebook_runs_without_errors(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits this environment: keep it to a laptop-sized CPU budget.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    # The kernel's own inline backend draws the figures (a non-interactive MPLBACKEND would skip them).
    monkeypatch.delenv("MPLBACKEND", raising=False)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, when any cell fails

    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors
    # What the notebook printed and drew: the loss around the optimiser step, the gradients, three figures.
    text = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []) if output.get("output_type") == "stream")
    before = re.findall(r"loss before the step: ([-\d.e]+)", text)
    after = re.findall(r"loss after the step: +([-\d.e]+)", text)
    assert before and after, "the notebook did not print the loss around its optimiser step"
    # One small AdamW step against the gradient must lower the loss on the batch it was computed on.
    assert float(after[-1]) < float(before[-1])
    assert "backbone gradient norm" in text
    figures = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    assert len(figures) >= 3, "the scenes, the gradient norms and the Grad-CAM map should each draw a figure"
