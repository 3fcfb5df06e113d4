"""The folder a training run writes: created fresh (never over an earlier run), and its small files.

Layout:
  config.json            resolved config + git revision + library versions
  metrics.csv            one row per epoch
  checkpoints/last.pt    checkpoints/best.pt (atomic)
  curves.png             loss and validation metric per epoch
  test_predictions.csv   evaluation/ (plots)   summary.json   model/ (the model package)
"""
from __future__ import annotations

import csv
import math
import platform
import subprocess
import time
from pathlib import Path

from perceptions.errors import PerceptionsError
from perceptions.files import atomic_write

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"


def create_run_dir(out, name: str) -> Path:
    """A new folder `out/<timestamp>_<name>` (`_2`, `_3`... appended if taken); never reuses one."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PerceptionsError(f"cannot create the output folder {out}: {e.strerror or e}") from None
    if not out.is_dir():
        raise PerceptionsError(f"--out {out} is not a folder")
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}_{_safe(name)}"
    for i in range(1, 1000):
        candidate = out / (stem if i == 1 else f"{stem}_{i}")
        try:
            candidate.mkdir()  # atomic: two runs started in the same second get different folders
            return candidate
        except FileExistsError:
            continue
    raise PerceptionsError(f"could not find a free run folder name under {out}")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "run"


def environment() -> dict:
    """What produced a run: git revision of the code and the versions of the libraries that matter."""
    import numpy
    import pandas
    import timm
    import torch
    import torchvision

    from perceptions.version import __version__

    return {
        "perceptions": __version__,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "threads": torch.get_num_threads(),
    }


def git_revision() -> str | None:
    """The commit of the code being run (with '+dirty' when it has uncommitted changes); None outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def append_metrics(run_dir, row: dict) -> None:
    """One row per epoch; the header is written with the first row. Rows of epochs that a resumed run
    repeats are dropped first, so the file always shows each epoch once. Rewritten atomically."""
    path = Path(run_dir) / METRICS_FILE
    rows = read_metrics(run_dir)
    rows = [r for r in rows if int(r["epoch"]) < int(row["epoch"])] + [row]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _csv_value(r.get(k)) for k in keys})


def _csv_value(v):
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return "" if v is None else v


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _parse(v: str):
    if v == "":
        return float("nan")
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


def plot_curves(run_dir, rows: list[dict], monitor: str) -> Path | None:
    """curves.png: train and validation loss, and the monitored validation metric, per epoch."""
    if not rows:
        return None
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    for key in ("train_loss", "val_loss"):
        if key in rows[0]:
            ax.plot(epochs, [r.get(key, math.nan) for r in rows], marker="o", label=key)
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    if ax.get_legend_handles_labels()[0]:  # a run without validation has nothing to label
        ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    for key in dict.fromkeys(["val_spearman", "val_within1", monitor]):
        if key in rows[0] and key != "val_loss":
            ax.plot(epochs, [r.get(key, math.nan) for r in rows], marker="o", label=key)
    ax.set(xlabel="epoch", title="validation")
    if ax.get_legend_handles_labels()[0]:  # a run without validation has nothing to label
        ax.legend()
    path = Path(run_dir) / "curves.png"
    fig.savefig(path, dpi=100)
    return path
