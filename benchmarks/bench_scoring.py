"""Benchmark: TrueSkill scoring of PP2-scale votes (1.2M votes, 6 studies, ~110k images).

Times our specialised TrueSkill on all votes (library call on a votes table, and `perceptions score`
end to end from a CSV on disk), and the `trueskill` package called vote by vote on a subsample, extrapolated
to the full size; checks both give the same ratings on that subsample.

    .venv/bin/python -m benchmarks.bench_scoring [--votes 1200000] [--package-votes 20000]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.studies import STUDY_NAMES


def synthetic_votes(n_votes: int = 1_200_000, n_images: int = 110_000, tie_rate: float = 0.134,
                    seed: int = 0) -> pd.DataFrame:
    """Tidy votes shaped like PP2: random pairs, ~13% ties, votes spread evenly over the six studies."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"{i:024x}" for i in range(n_images)], dtype=object)
    left = rng.integers(0, n_images, n_votes)
    right = (left + rng.integers(1, n_images, n_votes)) % n_images
    choice = rng.choice(np.array(["left", "right", "equal"], dtype=object), n_votes,
                        p=[(1 - tie_rate) / 2, (1 - tie_rate) / 2, tie_rate])
    studies = np.array(STUDY_NAMES, dtype=object)[rng.integers(0, len(STUDY_NAMES), n_votes)]
    return pd.DataFrame({"study": studies, "left": ids[left], "right": ids[right], "choice": choice})


def _package_ratings(votes: pd.DataFrame) -> dict:
    """The reference: `trueskill.rate_1vs1` vote by vote, Place Pulse parameters; location -> (mu, sigma)."""
    import trueskill

    env = trueskill.TrueSkill(mu=25, sigma=25 / 3, beta=25 / 6, tau=25 / 300, draw_probability=0.13)
    ratings = {}
    for study, a, b, c in zip(votes["study"], votes["left"], votes["right"], votes["choice"]):
        ra = ratings.get((study, a)) or env.create_rating()
        rb = ratings.get((study, b)) or env.create_rating()
        if c == "right":
            rb, ra = trueskill.rate_1vs1(rb, ra, env=env)
        else:
            ra, rb = trueskill.rate_1vs1(ra, rb, drawn=(c == "equal"), env=env)
        ratings[(study, a)], ratings[(study, b)] = ra, rb
    return ratings


def run(n_votes: int = 1_200_000, package_votes: int = 20_000, end_to_end: bool = True) -> dict:
    from perceptions.data.scoring import score_file, score_votes

    votes = synthetic_votes(n_votes)
    t0 = time.perf_counter()
    ours = score_votes(votes, "trueskill")
    ours_s = time.perf_counter() - t0

    sample = votes.iloc[:package_votes]
    t0 = time.perf_counter()
    reference = _package_ratings(sample)
    package_s = time.perf_counter() - t0
    package_full_s = package_s / len(sample) * n_votes

    ours_sample = score_votes(sample, "trueskill")
    ref_mu = np.array([reference[(s, loc)].mu for s, loc in zip(ours_sample["study"], ours_sample["location_id"])])
    ref_sigma = np.array([reference[(s, loc)].sigma for s, loc in zip(ours_sample["study"],
                                                                      ours_sample["location_id"])])
    result = {
        "votes": n_votes,
        "images": int(ours["location_id"].nunique()),
        "studies": int(ours["study"].nunique()),
        "ours_seconds": round(ours_s, 2),
        "package_votes_timed": len(sample),
        "package_seconds_on_sample": round(package_s, 2),
        "package_seconds_extrapolated": round(package_full_s, 1),
        "speedup": round(package_full_s / ours_s, 1),
        "max_abs_diff_mu": float(np.max(np.abs(ours_sample["trueskill.score"].to_numpy() - ref_mu))),
        "max_abs_diff_sigma": float(np.max(np.abs(ours_sample["trueskill.stds.-1"].to_numpy() - ref_sigma))),
    }
    if end_to_end:
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "votes.csv"
            site = pd.DataFrame({"_id": np.arange(n_votes), "choice": votes["choice"], "left": votes["left"],
                                 "right": votes["right"], "study_id": votes["study"],
                                 "timestamp": "2013-01-01 00:00:00", "voter_uniqueid": "v"})
            site.to_csv(csv, index=False)
            t0 = time.perf_counter()
            score_file(csv, Path(tmp) / "qscores.tsv", "trueskill")
            result["end_to_end_seconds"] = round(time.perf_counter() - t0, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_200_000)
    parser.add_argument("--package-votes", type=int, default=20_000)
    parser.add_argument("--no-end-to-end", dest="end_to_end", action="store_false")
    args = parser.parse_args()
    print(json.dumps(run(args.votes, args.package_votes, args.end_to_end), indent=2))


if __name__ == "__main__":
    main()
