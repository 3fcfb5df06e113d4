"""Whose perception? Score a biased voter subgroup's votes apart from the rest of the crowd and compare.

A city made with `perceptions synth --subgroup CROWD --subgroup-share F` has a share F of voters who judge the
scenes as another crowd does (perceptions/data/crowds.py: `local` weighs greenery, people, light and towers
differently); voters.csv says who is in which crowd, and truth.csv is the main crowd's truth. This script
scores each crowd's votes separately with TrueSkill (the main crowd's cut down at random to as many votes as the
subgroup cast, so that both are equally noisy), and reports per study:
  crowds_agree               Spearman of the subgroup's scores with the main crowd's: how far the crowds agree
  same_crowd_agree           the same for two disjoint samples of the main crowd of that size: the agreement
                             that noise alone allows
  label_vs_main_truth        the pooled labels (qscores.tsv, every vote) against the main crowd's truth ...
  label_vs_subgroup_truth    ... and against the subgroup's truth (the generator's formulas for that crowd)
  model_vs_main_truth        the shipped model (trained on a crowd with no subgroup) against each truth
  model_vs_subgroup_truth
  bottom_decile_overlap      of the tenth ranked lowest by the pooled labels, the share the subgroup alone
                             would also put in its lowest tenth (for `safe`: the streets flagged "unsafe")
and which scene attributes the two crowds disagree on most.

    python learning/code/responsible_crowd.py CITY [--model PKG] [--figures DIR]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import wrong_features as W
from perceptions.studies import STUDY_NAMES


def crowd_votes(city) -> tuple[pd.DataFrame, str]:
    """(votes with a `crowd` column, the subgroup's crowd name) of a city made with --subgroup."""
    from perceptions.data.placepulse import read_votes

    city = Path(city)
    made = json.loads((city / "city.json").read_text(encoding="utf-8")) if (city / "city.json").is_file() else {}
    if not (city / "voters.csv").is_file() or not made.get("subgroup"):
        raise W.PerceptionsError(f"{city}: no voter subgroup (make the city with `perceptions synth --subgroup "
                                 "local --subgroup-share 0.3`)")
    voters = pd.read_csv(city / "voters.csv", dtype=str).set_index("voter_uniqueid")["crowd"]
    votes = read_votes(city / "votes.tsv")
    votes["crowd"] = np.where(votes["voter"].map(voters) == made["subgroup"], "subgroup", "main")
    return votes, str(made["subgroup"])


def scores(votes: pd.DataFrame) -> pd.DataFrame:
    """TrueSkill scores of these votes: location_id x study."""
    from perceptions.data.scoring import score_votes

    return score_votes(votes, "trueskill").pivot(index="location_id", columns="study", values="trueskill.score")


def subgroup_truth(city, crowd: str) -> pd.DataFrame:
    """The subgroup crowd's true perception of every scene, from the generator's formulas for that crowd."""
    from perceptions.data.synthetic import true_perceptions
    from perceptions.data.folder import read_truth

    places = read_truth(Path(city) / "truth.csv")
    made = json.loads((Path(city) / "city.json").read_text(encoding="utf-8"))
    truth = true_perceptions(places, int(made.get("seed", 0)), crowd)
    return truth.set_index(places["location_id"])


def compare(city, model=None, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per-study table, per-image scores of both crowds, the attributes the crowds disagree on)."""
    from perceptions.evaluate.metrics import spearman

    votes, crowd = crowd_votes(city)
    sub = votes[votes["crowd"] == "subgroup"]
    everyone = votes[votes["crowd"] == "main"]
    # Two disjoint samples of the main crowd, each as large as the subgroup (or half of the main crowd).
    size = min(len(sub), len(everyone) // 2)
    order = np.random.default_rng(seed).permutation(len(everyone))
    main, other = (everyone.iloc[np.sort(order[k * size:(k + 1) * size])] for k in (0, 1))
    table = W.city_table(city).set_index("location_id")
    ids = table.index
    s_sub, s_main, s_other = (scores(v).reindex(ids) for v in (sub, main, other))
    truth_sub = subgroup_truth(city, crowd).reindex(ids)
    predicted = None
    if model is not None:
        predicted = model.predict(list(table["path"]))
        predicted.index = ids
    rows, drivers = [], []
    for study in STUDY_NAMES:
        label, truth_main = table[study], table[f"true_{study}"]
        low = label.rank(pct=True) <= 0.1
        row = {"study": study, "crowds_agree": spearman(s_sub[study], s_main[study]),
               "same_crowd_agree": spearman(s_other[study], s_main[study]),
               "label_vs_main_truth": spearman(label, truth_main),
               "label_vs_subgroup_truth": spearman(label, truth_sub[study]),
               "bottom_decile_overlap": float((s_sub[study].rank(pct=True)[low] <= 0.1).mean())}
        if predicted is not None:
            row["model_vs_main_truth"] = spearman(predicted[f"{study}_score"], truth_main)
            row["model_vs_subgroup_truth"] = spearman(predicted[f"{study}_score"], truth_sub[study])
        rows.append(row)
        # Where the subgroup ranks a scene higher than the main crowd does, which attributes are there?
        gap = s_sub[study].rank(pct=True) - s_main[study].rank(pct=True)
        for attribute in ("green", "people", "graffiti", "height", "colour", "cars", "decay", "road_width"):
            drivers.append({"study": study, "attribute": attribute, "rho": spearman(gap, table[attribute])})
    both = pd.concat({"main": s_main, "subgroup": s_sub, "scene": table[["green", "light"]]}, axis=1)
    return pd.DataFrame(rows), both, pd.DataFrame(drivers)


def plot(results: pd.DataFrame, both: pd.DataFrame, folder) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.4])
    points = left.scatter(both[("main", "safe")], both[("subgroup", "safe")], c=both[("scene", "green")], cmap="Greens",
                          s=10, edgecolors="grey", linewidths=0.2)
    fig.colorbar(points, ax=left, label="greenery of the scene")
    left.set_xlabel("safe: main crowd's TrueSkill score")
    left.set_ylabel("safe: subgroup's TrueSkill score")
    left.set_title("The same scenes, two crowds (equal numbers of votes)", fontsize=9)
    columns = [c for c in ("label_vs_main_truth", "label_vs_subgroup_truth", "model_vs_main_truth",
                           "model_vs_subgroup_truth") if c in results]
    width = 0.8 / len(columns)
    for k, column in enumerate(columns):
        right.bar(np.arange(len(results)) + (k - (len(columns) - 1) / 2) * width, results[column], width,
                  label=column)
    right.set_xticks(range(len(results)), results["study"], fontsize=8)
    right.set_ylabel("Spearman")
    right.set_title("Pooled labels and the model: whose truth do they follow?", fontsize=9)
    right.legend(fontsize=7, loc="lower left")
    right.grid(alpha=0.3, axis="y")
    return W.save_figure(fig, folder, "crowds")


def main(argv=None) -> None:
    from perceptions.predict.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("city", help="a synthetic city made with --subgroup")
    parser.add_argument("--model", help="model package (default: the shipped model)")
    parser.add_argument("--no-model", action="store_true", help="skip the model's predictions")
    parser.add_argument("--figures", help="folder to write the figure into")
    args = parser.parse_args(argv)
    model = None if args.no_model else load_model(args.model)
    results, both, drivers = compare(args.city, model)
    votes, crowd = crowd_votes(args.city)
    share = float((votes["crowd"] == "subgroup").mean())
    print(f"{share:.0%} of the votes came from the subgroup ({crowd} crowd); per study:")
    columns = [c for c in results.columns if c != "study"]
    print(f"{'study':11s}" + "".join(f"{c:>24s}" for c in columns))
    for _, row in results.iterrows():
        print(f"{row['study']:11s}" + "".join(f"{row[c]:24.2f}" for c in columns))
    print("where the subgroup ranks a scene higher than the main crowd, the attributes it has (Spearman of the "
          "rank gap with the attribute; the two strongest per study):")
    for study, group in drivers.groupby("study", sort=False):
        top = group.reindex(group["rho"].abs().sort_values(ascending=False).index).head(2)
        print(f"  {study:10s} " + ", ".join(f"{r.attribute} {r.rho:+.2f}" for r in top.itertuples()))
    if args.figures:
        print(f"figure: {plot(results, both, args.figures)}")


if __name__ == "__main__":
    W.run_main(main)
