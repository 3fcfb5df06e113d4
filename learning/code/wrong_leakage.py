"""Leakage: what a random split lets through, and what choosing on the test split does to the number reported.

Two experiments on one cache of backbone features (wrong_features.py), each repeated over split seeds:

1. random vs city split. `perceptions train --split random` puts images of every city in training and test;
   `--split city` holds whole cities out (perceptions/data/labels.py: split_labels). The same ridge head is
   fitted on each, its penalty chosen on validation, and scored on its test split.
2. choosing on test. The test split is cut at random in two halves: `test` (the part one looks at) and
   `future` (images of the same kind nobody looks at: those the model will meet later). Thirty-two candidate
   heads (each on a random subset of the features: think of 32 settings tried) are compared; the winner among
   the first k is picked either on validation (right) or on `test` (wrong). Its optimism is its reported test
   Spearman minus its future Spearman, averaged over 20 random halvings (so that the two halves' difference in
   difficulty cancels out). Picked on test, the number reported is the largest of k noisy numbers: the
   optimism grows with k; picked on validation it stays near 0.

    python learning/code/wrong_leakage.py FEATURES.npz [--seeds 5] [--figures DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import wrong_features as W

CANDIDATES = 32
SUBSET = 128        # features per candidate head
TRIED = (1, 2, 4, 8, 16, 32)
HALVINGS = 20       # random ways of cutting the test split into `test` and `future`


def split_protocols(table, x, seeds: int) -> pd.DataFrame:
    """One row per (split method, seed): validation and test Spearman, and the test cities of a city split."""
    y, truth = W.labels(table), W.truth_of(table)
    rows = []
    for method in ("random", "city"):
        for seed in range(seeds):
            parts = W.split(table, seed, method)
            head = W.fit_on_validation(x, y, parts)
            val, test = parts == "val", parts == "test"
            rows.append({"split": method, "seed": seed,
                         "val_spearman": W.mean_spearman(head.predict(x[val]), y[val]),
                         "test_spearman": W.mean_spearman(head.predict(x[test]), y[test]),
                         "test_spearman_truth": W.mean_spearman(head.predict(x[test]), truth[test]),
                         "test_cities": ",".join(sorted(table.loc[test, "city"].unique()))})
    return pd.DataFrame(rows)


def candidate_predictions(table, x, seed: int, candidates: int = CANDIDATES, subset: int = SUBSET):
    """(the split, validation Spearman of each candidate, each candidate's predictions on the test images)."""
    y = W.labels(table)
    parts = W.split(table, seed)
    rng = np.random.default_rng([seed, 7])
    val_scores, test_preds = [], []
    for _ in range(candidates):
        columns = np.sort(rng.choice(x.shape[1], size=min(subset, x.shape[1]), replace=False))
        head = W.fit_on_validation(x[:, columns], y, parts)
        val_scores.append(W.mean_spearman(head.predict(x[parts == "val"][:, columns]), y[parts == "val"]))
        test_preds.append(head.predict(x[parts == "test"][:, columns]))
    return parts, np.array(val_scores), test_preds


def optimism(table, x, seed: int, halvings: int = HALVINGS, tried=TRIED) -> pd.DataFrame:
    """For each k and each way of choosing: the mean, over random halvings of the test split into `test` (the
    part looked at) and `future` (never looked at), of (reported test Spearman - future Spearman)."""
    y = W.labels(table)
    parts, val_scores, preds = candidate_predictions(table, x, seed)
    y_test = y[parts == "test"]
    rng = np.random.default_rng([seed, 8])
    gaps = {(k, on): [] for k in tried for on in ("val", "test")}
    for _ in range(halvings):
        half = rng.permutation(len(y_test)) < len(y_test) // 2
        looked = np.array([W.mean_spearman(p[half], y_test[half]) for p in preds])
        future = np.array([W.mean_spearman(p[~half], y_test[~half]) for p in preds])
        for k in tried:
            for on, scores in (("val", val_scores), ("test", looked)):
                best = int(np.argmax(scores[:k]))
                gaps[(k, on)].append(looked[best] - future[best])
    return pd.DataFrame([{"tried": k, "chosen_on": on, "optimism": float(np.mean(g))}
                         for (k, on), g in gaps.items()])


def peeking(table, x, seeds: int) -> pd.DataFrame:
    return pd.concat([optimism(table, x, seed).assign(seed=seed) for seed in range(seeds)], ignore_index=True)


def plot(protocols: pd.DataFrame, peeks: pd.DataFrame, folder) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for k, method in enumerate(("random", "city")):
        group = protocols[protocols["split"] == method]
        for j, metric in enumerate(("val_spearman", "test_spearman", "test_spearman_truth")):
            left.scatter(np.full(len(group), j + (k - 0.5) * 0.3), group[metric], s=18,
                         color=("C0", "C3")[k], label=f"--split {method}" if j == 0 else None)
    left.set_xticks(range(3), ["validation", "test", "test vs truth"])
    left.set_ylabel("mean Spearman (one dot per split seed)")
    left.set_title("Random vs city split", fontsize=10)
    left.legend(fontsize=8)
    for on, colour in (("val", "C0"), ("test", "C3")):
        group = peeks[peeks["chosen_on"] == on].groupby("tried")["optimism"]
        right.errorbar(group.mean().index, group.mean(), yerr=group.std(ddof=1).fillna(0), fmt="o-", capsize=3,
                       color=colour, label=f"chosen on {'validation' if on == 'val' else 'test'}")
    right.axhline(0, color="grey", lw=0.8)
    right.set_xscale("log", base=2)
    right.set_xlabel("settings tried")
    right.set_ylabel(f"optimism: reported - future (+- sd, {peeks['seed'].nunique()} seeds)")
    right.set_title("Choosing on the test split", fontsize=10)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return W.save_figure(fig, folder, "leakage")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", help="wrong_features.py's .npz of a city with several cities")
    parser.add_argument("--seeds", type=int, default=5, help="split seeds 0..N-1")
    parser.add_argument("--figures", help="folder to write the figure into")
    args = parser.parse_args(argv)
    table, x = W.load_features(args.features)
    protocols = split_protocols(table, x, args.seeds)
    print(f"1. random vs city split (mean Spearman over the studies; mean +- sd over {args.seeds} seeds)")
    for method, group in protocols.groupby("split", sort=False):
        print(f"  --split {method:6s}  val_spearman {W.spread(group['val_spearman'])}   test_spearman "
              f"{W.spread(group['test_spearman'])}   test_spearman_truth {W.spread(group['test_spearman_truth'])}")
        print(f"  {'':16s}test_spearman seed by seed: " + ", ".join(f"{v:.3f}" for v in group["test_spearman"]))
    print("  test cities of --split city by seed: " + "; ".join(protocols.loc[protocols["split"] == "city",
                                                                          "test_cities"]))
    peeks = peeking(table, x, args.seeds)
    print(f"2. the winner of k settings, chosen on validation or on test: its optimism (reported test Spearman "
          f"minus future Spearman), mean +- sd over {args.seeds} seeds")
    for k, group in peeks.groupby("tried"):
        chosen = {on: g["optimism"] for on, g in group.groupby("chosen_on")}
        print(f"  k={k:2d}  chosen on validation: optimism {W.spread(chosen['val'])}   chosen on test: optimism "
              f"{W.spread(chosen['test'])}")
    if args.figures:
        print(f"figure: {plot(protocols, peeks, args.figures)}")


if __name__ == "__main__":
    W.run_main(main)
