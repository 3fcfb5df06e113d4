"""Your own training loop: a torch Dataset over cached backbone features, a DataLoader, and ten lines that
train a linear head, compared on the validation split with the head-only epochs of `perceptions train`.

    python learning/code/own_loop.py --data /tmp/ch6_ex1/city --cache /tmp/ch6_ex1/features.pt \
        --runs /tmp/ch6_ex2/head --out FIGURES

For every run folder under --runs (made by `perceptions train --freeze-epochs N --epochs 0 --loss regression
--no-final-test`), the loop trains on the same features, the same split (the run's seed) and the same 1..10
targets for the same number of epochs, batch size and peak learning rate, and both are scored on the
validation images with the same function. What `perceptions train` adds to these ten lines is in
perceptions/train/ (warm-up and cosine decay, dropout, gradient clipping, best-epoch selection, checkpoints).

Writes learning_06_own_loop.png: training and validation loss and validation Spearman per epoch, both loops.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from city_features import cached_or_built, city_split, figure_path, rows_of, run, save_figure, validation_report, \
    with_seed
from perceptions.errors import PerceptionsError
from perceptions.train.losses import masked_regression_loss


class FeatureDataset(Dataset):
    """Item i: (features of image i (F,), its 1..10 targets (S,), NaN where unrated). A Dataset only needs
    __len__ and __getitem__; the DataLoader batches, shuffles and (with workers) loads in parallel."""

    def __init__(self, features: torch.Tensor, targets):
        self.features = torch.as_tensor(features, dtype=torch.float32)
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i):
        return self.features[i], self.targets[i]


def train_linear_head(train_set: Dataset, val_x: torch.Tensor, val_y: torch.Tensor, epochs: int = 30,
                      batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 0.01, seed: int = 0):
    """-> (head, history): a linear head trained with AdamW on masked MSE; history has one row per epoch
    (epoch, train_loss: mean over the epoch's batches, val_loss, and the validation predictions)."""
    torch.manual_seed(seed)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    x0, y0 = train_set[0]
    head = torch.nn.Linear(len(x0), len(y0))
    torch.nn.init.constant_(head.bias, 5.5)       # start in the middle of the 1..10 scale
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for epoch in range(1, epochs + 1):
        losses = []
        for x, y in loader:                          # the ten lines: a batch,
            loss = masked_regression_loss(head(x), y)    # the forward pass and the loss,
            opt.zero_grad()                              # last step's gradients cleared,
            loss.backward()                              # new ones by backpropagation,
            opt.step()                                   # and one step of AdamW
            losses.append(loss.item())
        with torch.no_grad():
            pred = head(val_x)
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)),
                            "val_loss": float(masked_regression_loss(pred, val_y)), "pred": pred.numpy()})
    return head, history


def run_folders(runs) -> list[Path]:
    folders = sorted(p for p in Path(runs).glob("*/") if (p / "metrics.csv").is_file())
    if not folders:
        raise PerceptionsError(f"{runs} holds no training run (a folder with metrics.csv): run `perceptions "
                               "train ... --epochs 0 --loss regression --out` into it first")
    return folders


def compare(folder: Path, base, cache: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(own loop per epoch, the run's metrics.csv, the run's config) on the run's own split and settings;
    base: the city's TrainData (city_features.city_split) at any seed."""
    config = json.loads((folder / "config.json").read_text())["config"]
    if config["epochs"] != 0 or config["loss"] != "regression":
        raise PerceptionsError(f"{folder}: compare with a head-only regression run (--epochs 0 --loss regression)")
    data = with_seed(base, config["seed"])
    splits = pd.read_csv(folder / "splits.csv", dtype=str).set_index("location_id")["split"]
    if not (splits.reindex(data.table["location_id"].astype(str)).to_numpy() == data.split).all():
        raise PerceptionsError(f"{folder}: its splits.csv is not the split of this city at seed {config['seed']}")
    feats = cache["features"][rows_of(cache, data)]
    train, val = data.rows("train"), data.rows("val")
    _, history = train_linear_head(FeatureDataset(feats[train], data.targets[train]), feats[val],
                                   torch.as_tensor(data.targets[val]), epochs=config["freeze_epochs"],
                                   batch_size=config["head_batch_size"], lr=config["head_lr_frozen"],
                                   weight_decay=config["weight_decay"], seed=config["seed"])
    own = pd.DataFrame([{**{k: h[k] for k in ("epoch", "train_loss", "val_loss")},
                         **validation_report(h["pred"], data)} for h in history])
    return own, pd.read_csv(folder / "metrics.csv"), config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the city the runs trained on")
    parser.add_argument("--cache", help="feature cache of feature_space.py (computed and written if missing)")
    parser.add_argument("--runs", required=True, help="folder of head-only `perceptions train` runs")
    parser.add_argument("--out", required=True, help="folder for the figure")
    parser.add_argument("--overwrite", action="store_true", help="replace a figure that exists")
    args = parser.parse_args(argv)
    name = "learning_06_own_loop.png"
    figure_path(args.out, name, args.overwrite)
    folders = run_folders(args.runs)
    cache = cached_or_built(args.cache, args.data)
    base = city_split(args.data)
    curves = []
    for folder in folders:
        own, theirs, config = compare(folder, base, cache)
        curves.append((config["seed"], own, theirs))
        best_own, best_theirs = (f.loc[f["val_spearman"].idxmax()] for f in (own, theirs))
        print(f"seed {config['seed']}: best val_spearman own loop {best_own['val_spearman']:.3f} "
              f"(epoch {int(best_own['epoch'])}), perceptions train {best_theirs['val_spearman']:.3f} "
              f"(epoch {int(best_theirs['epoch'])}); last epoch {own['val_spearman'].iloc[-1]:.3f} and "
              f"{theirs['val_spearman'].iloc[-1]:.3f}")
    if len(curves) > 1:
        gap = np.array([o["val_spearman"].max() - t["val_spearman"].max() for _, o, t in curves])
        print(f"own minus perceptions train, best val_spearman over {len(gap)} seeds: mean {gap.mean():+.3f} "
              f"(min {gap.min():+.3f}, max {gap.max():+.3f})")
    draw(curves, args.out, name, args.overwrite)


def draw(curves, out, name, overwrite) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (seed, own, theirs) in enumerate(curves):
        for frame, style, who in ((own, "-", "own loop"), (theirs, "--", "perceptions train")):
            axes[0].plot(frame["epoch"], frame["train_loss"], style, color=f"C{i}", alpha=0.5,
                         label=f"seed {seed}, {who}, train" if i == 0 else None)
            axes[0].plot(frame["epoch"], frame["val_loss"], style, color=f"C{i}",
                         label=f"seed {seed}, {who}, validation" if i == 0 else None)
            axes[1].plot(frame["epoch"], frame["val_spearman"], style, color=f"C{i}",
                         label=f"seed {seed}, {who}")
    axes[0].set_yscale("log")
    axes[0].set_title("masked MSE loss (faint: training; solid colour: validation)", fontsize=10)
    axes[1].set_title("validation Spearman (mean of the six studies)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.suptitle("A ten-line loop on cached features (solid) against perceptions train's head-only epochs (dashed)")
    fig.tight_layout()
    save_figure(fig, out, name, overwrite)


if __name__ == "__main__":
    run(main)
