"""demo/demo.ipynb ("the first 30 minutes") runs from top to bottom on CPU, offline, and is committed without
outputs; every "Question" has an answer, and the cells it teaches with print and draw what they should: the loss
around the optimiser step, the gradients reaching the backbone, one feature map per stage, and a 20-step head
whose training and validation losses fall.

The notebook is executed on an in-memory copy with nbclient (the `python3` kernel of the environment running the
tests), in a temporary working directory, so nothing in the repository is written to. It takes about a minute on
two idle CPU cores.
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


def test_every_question_has_an_answer_and_every_try_it_a_setting_to_change():
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        if "**Question.**" in cell.source:
            # The answer follows, folded, in the same cell or the next markdown cell after the code it is about.
            rest = [c.source for c in cells[i:i + 4] if c.cell_type == "markdown"]
            assert any("<summary>Answer</summary>" in text for text in rest), f"cell {i}: a question without answer"
        if "**Try it.**" in cell.source:
            following = next(c for c in cells[i + 1:] if c.cell_type == "code")
            assert re.search(r"^[A-Z_]+ = .*# try", following.source, re.MULTILINE), \
                f"cell {i}: a 'Try it' without a setting (NAME = value  # try ...) in the next code cell"


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
    # One feature map per stage, caught by hooks, at the shipped 128 px: the last one 1,280 x 4 x 4, whose mean
    # over positions is the pooled feature vector.
    shapes = dict(re.findall(r"^(stem|stage\d|head_conv) +(\(.*\))$", text, re.MULTILINE))
    assert list(shapes) == ["stem"] + [f"stage{i}" for i in range(7)] + ["head_conv"]
    assert shapes["stem"] == "(1, 32, 64, 64)" and shapes["head_conv"] == "(1, 1280, 4, 4)"
    assert "= the mean of head_conv over its positions: True" in text
    # The 20-step head learns: both losses fall.
    losses = re.search(r"head training: train loss ([\d.]+) -> ([\d.]+), validation loss ([\d.]+) -> ([\d.]+)", text)
    assert losses, "the notebook did not print its head-training losses"
    train_first, train_last, val_first, val_last = map(float, losses.groups())
    assert train_last < 0.8 * train_first and val_last < 0.8 * val_first
    assert re.search(r"your 20-step head +validation Spearman", text)
    figures = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    # scenes, crowd vs truth, feature maps, gradient norms, the head's curves, Grad-CAM
    assert len(figures) >= 6, f"expected six figures, the notebook drew {len(figures)}"
