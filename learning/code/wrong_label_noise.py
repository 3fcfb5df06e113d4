"""Label noise: the same scenes, the same truth, scored from 2, 6 or 30 crowd votes per image.

`perceptions synth` with the same --images and --seed draws the same scenes and the same true perception; only
the votes change with --votes-per-image. So one cache of backbone features serves every city, and the only
difference between the heads fitted here is the noise in the labels they learn from (and choose their penalty
on). For each split seed the script reports, on the validation images:
  label_spearman_truth   the labels against the truth: how good the crowd's scores are
  val_spearman           the head against the labels: what an evaluation on real data reports
  val_spearman_truth     the head against the truth: what one wants, and only a synthetic city can measure

    python learning/code/wrong_label_noise.py FEATURES.npz CITY... [--seeds 5] [--figures DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import wrong_features as W

METRICS = ("label_spearman_truth", "val_spearman", "val_spearman_truth")


def votes_per_image(city) -> float:
    """Appearances of each image per study: two per vote, over six studies."""
    from perceptions.data.placepulse import list_images, read_votes

    votes = read_votes(Path(city) / "votes.tsv")
    return 2 * len(votes) / 6 / len(list_images(Path(city) / "images"))


def compare(features, cities, seeds: int = 5) -> pd.DataFrame:
    """One row per (city, seed): the three metrics on that seed's validation split."""
    table, x = W.load_features(features)
    truth = W.truth_of(table)
    rows = []
    for city in cities:
        y = W.labels_of(city, table["location_id"])
        density = votes_per_image(city)
        for seed in range(seeds):
            parts = W.split(table, seed)
            val = parts == "val"
            head = W.fit_on_validation(x, y, parts)
            pred = head.predict(x[val])
            rows.append({"city": str(city), "votes_per_image": round(density, 1), "seed": seed,
                         "label_spearman_truth": W.mean_spearman(y[val], truth[val]),
                         "val_spearman": W.mean_spearman(pred, y[val]),
                         "val_spearman_truth": W.mean_spearman(pred, truth[val]), "alpha": head.alpha})
    return pd.DataFrame(rows)


def plot(results: pd.DataFrame, folder) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    groups = list(results.groupby("votes_per_image", sort=True))
    for k, metric in enumerate(METRICS):
        means = [g[metric].mean() for _, g in groups]
        sds = [g[metric].std(ddof=1) if len(g) > 1 else 0.0 for _, g in groups]
        ax.errorbar(np.arange(len(groups)) + (k - 1) * 0.12, means, yerr=sds, marker="o", capsize=4,
                    label=metric, ls="-")
    ax.set_xticks(range(len(groups)), [f"{v:g} votes per image" for v, _ in groups])
    ax.set_ylabel("mean Spearman over the six studies")
    ax.set_title(f"Label noise: the same images and truth (mean +- sd over {results['seed'].nunique()} "
                 "split seeds)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return W.save_figure(fig, folder, "label_noise")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", help="wrong_features.py's .npz of one of the cities")
    parser.add_argument("cities", nargs="+", help="synthetic cities with the same --images and --seed")
    parser.add_argument("--seeds", type=int, default=5, help="split seeds 0..N-1")
    parser.add_argument("--figures", help="folder to write the figure into")
    args = parser.parse_args(argv)
    results = compare(args.features, args.cities, args.seeds)
    print(f"validation split, mean Spearman over the six studies, mean +- sd over {args.seeds} split seeds:")
    print(f"{'votes per image':>15s}  " + "  ".join(f"{m:>22s}" for m in METRICS) + "  paired gain vs truth")
    first = None
    for density, group in results.groupby("votes_per_image", sort=True):
        truth = group.set_index("seed")["val_spearman_truth"]
        first = truth if first is None else first
        print(f"{density:15g}  " + "  ".join(f"{W.spread(group[m]):>22s}" for m in METRICS)
              + f"  {W.spread(truth - first):>20s}")
    print("(paired gain: val_spearman_truth minus that of the noisiest labels, seed by seed, same images)")
    if args.figures:
        print(f"figure: {plot(results, args.figures)}")


if __name__ == "__main__":
    W.run_main(main)
