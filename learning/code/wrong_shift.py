"""Distribution shift: hold out one city at a time, and score the same images with and without their city in
training.

For each city C and split seed: the random split (`perceptions train --split random`) of all images trains a
head that has seen C (`seen`); a second head is trained on the same split with every image of C removed
(`held_out`). Both are scored on the same images, C's test images, against the labels and the truth, so the
difference is the cost of never having seen that city (a correlation within one city is lower than over all
cities, whatever the model, which is why both numbers are measured on the same images). The city's profile
(its share of night and fog, its greenery and decay against the other cities') says what was new in it.

    python learning/code/wrong_shift.py FEATURES.npz [--seeds 5] [--figures DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import wrong_features as W


def hold_out_each_city(table, x, seeds: int) -> pd.DataFrame:
    """One row per (city, seed): Spearman on the city's test images of the head that saw it and of the one
    that did not."""
    y, truth = W.labels(table), W.truth_of(table)
    rows = []
    for seed in range(seeds):
        parts = W.split(table, seed)
        seen = W.fit_on_validation(x, y, parts)
        for city in sorted(table["city"].unique()):
            here = (table["city"] == city).to_numpy()
            test = here & (parts == "test")
            if test.sum() < 2:
                continue
            without = np.where(here, "unused", parts)  # the other cities' train and val images only
            held_out = W.fit_on_validation(x, y, without)
            rows.append({"city": city, "seed": seed, "test_images": int(test.sum()),
                         "seen_spearman": W.mean_spearman(seen.predict(x[test]), y[test]),
                         "held_out_spearman": W.mean_spearman(held_out.predict(x[test]), y[test]),
                         "seen_spearman_truth": W.mean_spearman(seen.predict(x[test]), truth[test]),
                         "held_out_spearman_truth": W.mean_spearman(held_out.predict(x[test]), truth[test])})
    return pd.DataFrame(rows)


def city_profiles(table) -> pd.DataFrame:
    """Per city: share of night and fog images, mean greenery and decay."""
    return table.assign(night=table["light"] == "night", fog=table["light"] == "fog").groupby("city")[
        ["night", "fog", "green", "decay"]].mean()


def plot(results: pd.DataFrame, folder) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    cities = sorted(results["city"].unique())
    for k, (column, label) in enumerate((("seen_spearman_truth", "city in training"),
                                         ("held_out_spearman_truth", "city held out"))):
        group = results.groupby("city")[column]
        ax.errorbar(np.arange(len(cities)) + (k - 0.5) * 0.2, group.mean().loc[cities],
                    yerr=group.std(ddof=1).fillna(0).loc[cities], fmt="o", capsize=4, label=label)
    ax.set_xticks(range(len(cities)), cities)
    ax.set_ylabel("mean Spearman vs truth, the city's test images")
    ax.set_title(f"One city held out (mean +- sd over {results['seed'].nunique()} split seeds)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return W.save_figure(fig, folder, "shift")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", help="wrong_features.py's .npz of a city with several cities")
    parser.add_argument("--seeds", type=int, default=5, help="split seeds 0..N-1")
    parser.add_argument("--figures", help="folder to write the figure into")
    args = parser.parse_args(argv)
    table, x = W.load_features(args.features)
    if table["city"].nunique() < 2:
        raise W.PerceptionsError(f"{args.features}: the city has one city only; make it with --cities 2 or more")
    results = hold_out_each_city(table, x, args.seeds)
    if results.empty:
        raise W.PerceptionsError(f"{args.features}: fewer than 2 test images in every city; use more --images")
    profiles = city_profiles(table)
    print(f"mean Spearman on each city's test images (mean +- sd over {args.seeds} split seeds)")
    for city, group in results.groupby("city"):
        p = profiles.loc[city]
        print(f"  {city:12s} seen_spearman {W.spread(group['seen_spearman'])}  held_out_spearman "
              f"{W.spread(group['held_out_spearman'])}  |  vs truth: seen {W.spread(group['seen_spearman_truth'])}"
              f"  held out {W.spread(group['held_out_spearman_truth'])}  |  night {p['night']:.0%}, fog "
              f"{p['fog']:.0%}, green {p['green']:.2f}, decay {p['decay']:.2f}")
    drop = results["seen_spearman_truth"] - results["held_out_spearman_truth"]
    print(f"cost of holding a city out (seen - held out, vs truth, paired on the same images): "
          f"{W.spread(drop)} over {len(drop)} city-seeds")
    if args.figures:
        print(f"figure: {plot(results, args.figures)}")


if __name__ == "__main__":
    W.run_main(main)
