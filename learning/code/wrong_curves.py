"""Overfitting, read from a run's metrics.csv: the training loss against the validation loss, epoch by epoch.

`perceptions train` appends one row per epoch to RUN/metrics.csv (perceptions/train/run_folder.py:
append_metrics): `train_loss` (on the training images, as they were trained on), `val_loss` and the
validation metrics. Overfitting is the widening gap: the training loss keeps falling while the validation
loss has stopped falling and rises. This script prints where each curve is at its best and at the end, and
draws both.

    python learning/code/wrong_curves.py RUN_DIR... [--figures DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import wrong_features as W


def read_metrics(run) -> pd.DataFrame:
    path = Path(run) / "metrics.csv"
    if not path.is_file():
        raise W.PerceptionsError(f"{run}: no metrics.csv (is it a run folder of `perceptions train`?)")
    metrics = pd.read_csv(path)
    missing = {"epoch", "train_loss", "val_loss", "val_spearman"} - set(metrics.columns)
    if missing or metrics.empty:
        raise W.PerceptionsError(f"{path}: no validation columns ({', '.join(sorted(missing)) or 'no rows'}): "
                                 "train with a validation split (--val-frac above 0)")
    return metrics


def summary(metrics: pd.DataFrame) -> dict:
    """The epochs of the lowest validation loss and of the best validation Spearman, and the last one's numbers."""
    low = metrics.loc[metrics["val_loss"].idxmin()]
    best = metrics.loc[metrics["val_spearman"].idxmax()]
    last = metrics.iloc[-1]
    return {"min_val_loss_epoch": int(low["epoch"]), "min_val_loss": float(low["val_loss"]),
            "best_val_spearman_epoch": int(best["epoch"]), "best_val_spearman": float(best["val_spearman"]),
            "last_epoch": int(last["epoch"]), "last_train_loss": float(last["train_loss"]),
            "last_val_loss": float(last["val_loss"]), "last_val_spearman": float(last["val_spearman"])}


def plot(runs: list[tuple[str, pd.DataFrame]], folder) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    losses, spearman = fig.subplots(1, 2)
    for k, (name, metrics) in enumerate(runs):
        colour = f"C{k}"
        losses.plot(metrics["epoch"], metrics["train_loss"], "-", color=colour, label=f"{name}: train_loss")
        losses.plot(metrics["epoch"], metrics["val_loss"], "--", color=colour, label=f"{name}: val_loss")
        spearman.plot(metrics["epoch"], metrics["val_spearman"], "-", color=colour, label=name)
        s = summary(metrics)
        losses.axvline(s["min_val_loss_epoch"], color=colour, lw=0.8, ls=":")
        spearman.scatter([s["best_val_spearman_epoch"]], [s["best_val_spearman"]], color=colour, zorder=3)
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    losses.set_title("training vs validation loss (dotted: lowest val_loss)", fontsize=10)
    spearman.set_xlabel("epoch")
    spearman.set_ylabel("val_spearman")
    spearman.set_title("validation Spearman (dot: the best epoch, the one exported)", fontsize=10)
    for ax in (losses, spearman):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return W.save_figure(fig, folder, "overfitting")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders of `perceptions train`")
    parser.add_argument("--figures", help="folder to write the figure into")
    args = parser.parse_args(argv)
    # A run is named by its --out folder (overfit/...) when those differ, else by its own folder.
    parents = [Path(run).resolve().parent.name for run in args.runs]
    names = parents if len(set(parents)) == len(parents) else [Path(run).name for run in args.runs]
    runs = [(name, read_metrics(run)) for name, run in zip(names, args.runs)]
    for name, metrics in runs:
        s = summary(metrics)
        print(f"{name}: lowest val_loss {s['min_val_loss']:.3f} at epoch {s['min_val_loss_epoch']}; best "
              f"val_spearman {s['best_val_spearman']:.3f} at epoch {s['best_val_spearman_epoch']}; last epoch "
              f"{s['last_epoch']}: train_loss {s['last_train_loss']:.3f}, val_loss {s['last_val_loss']:.3f}, "
              f"val_spearman {s['last_val_spearman']:.3f}")
    if args.figures:
        print(f"figure: {plot(runs, args.figures)}")


if __name__ == "__main__":
    W.run_main(main)
