"""Check: does the label-noise ceiling estimated from the votes match the Spearman of the labels with the truth?

On the synthetic city (known truth per image, simulated crowd votes, TrueSkill labels), for each density and
seed, prints per study the direct Spearman(TrueSkill label, truth), the estimate from the votes alone
(`perceptions.evaluate.metrics.label_noise_ceiling`, which never sees the truth), their difference, the former
split-half estimate for comparison, and the seconds the estimate took. No images are drawn: places, truth and
votes only.

    .venv/bin/python -m benchmarks.ceiling_check                        # 3000 images, 6 and 3.5 votes, seed 0
    .venv/bin/python -m benchmarks.ceiling_check --seeds 0,1,2,3,4 --images 3000
    .venv/bin/python -m benchmarks.ceiling_check --test-ids 600        # as the evaluation: all votes, 600 ids
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from perceptions.data.scoring import score_votes
from perceptions.data.synthetic import sample_places, simulate_votes, true_perceptions
from perceptions.evaluate import metrics as M
from perceptions.studies import STUDY_NAMES, study


def trueskill_scorer(votes: pd.DataFrame) -> pd.Series:
    """votes -> TrueSkill mu by location_id: how the labels are made."""
    scored = score_votes(votes, "trueskill")
    return scored.set_index(scored["location_id"].astype(str))["trueskill.score"]


def city_votes(n_images: int, votes_per_image: float, seed: int, cities: int = 4):
    places = sample_places(n_images, cities, seed)
    truth = true_perceptions(places, seed)
    ids = places["location_id"].astype(str).to_numpy()
    votes = simulate_votes(ids, truth, votes_per_image, seed)
    votes = votes.assign(study=votes["study_id"].map(lambda s: study(s).name))
    return ids, truth.set_axis(pd.Index(ids)), votes


def check(n_images: int, votes_per_image: float, seed: int, test_ids: int | None = None,
          split_half: bool = True) -> list[dict]:
    """One row per study: direct and estimated ceiling (over `test_ids` random images when given)."""
    ids, truth, votes = city_votes(n_images, votes_per_image, seed)
    evaluated = ids if not test_ids else np.random.default_rng([seed, 9]).choice(ids, test_ids, replace=False)
    rows = []
    for name in STUDY_NAMES:
        study_votes = votes[votes["study"] == name]
        labels = trueskill_scorer(study_votes)
        direct = M.spearman(labels.loc[evaluated], truth[name].loc[evaluated])
        started = time.perf_counter()
        estimate = M.label_noise_ceiling(votes=study_votes, score_fn=trueskill_scorer, seed=seed,
                                         ids=evaluated)["label_ceiling"]
        seconds = time.perf_counter() - started
        old = (M.reliability_ceiling(M.split_half_reliability(study_votes, trueskill_scorer, seed=seed,
                                                              ids=evaluated)) if split_half else float("nan"))
        rows.append({"votes/img": votes_per_image, "images": n_images, "ids": len(evaluated), "seed": seed,
                     "study": name, "direct": direct, "estimate": estimate, "diff": estimate - direct,
                     "split_half": old, "seconds": seconds})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--densities", default="6,3.5", help="votes per image and study, comma-separated")
    parser.add_argument("--seeds", default="0", help="comma-separated")
    parser.add_argument("--test-ids", type=int, default=None, metavar="N",
                        help="evaluate on N random images (all votes used, as the evaluation does)")
    parser.add_argument("--no-split-half", action="store_true", help="skip the former estimate (faster)")
    args = parser.parse_args(argv)
    rows = []
    for density in (float(d) for d in args.densities.split(",")):
        density = int(density) if density.is_integer() else density
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += check(args.images, density, seed, args.test_ids, split_half=not args.no_split_half)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_rows", 1000):
        print(table.round({"direct": 3, "estimate": 3, "diff": 3, "split_half": 3, "seconds": 2})
              .to_string(index=False))
        print()
        summary = table.groupby("votes/img").agg(
            studies=("diff", "size"), mean_diff=("diff", "mean"), sd_diff=("diff", "std"),
            max_abs_diff=("diff", lambda d: d.abs().max()), within_002=("diff", lambda d: (d.abs() <= 0.02).mean()),
            split_half_mean_diff=("split_half", lambda s: (s - table.loc[s.index, "direct"]).mean()),
            seconds=("seconds", "mean"))
        print(summary.round(4).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
