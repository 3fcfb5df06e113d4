"""How many votes does the vote page's active pair choice save? Simulated voters on the synthetic city.

For each seed a synthetic city's places and truth are drawn (perceptions.data.synthetic: sample_places and
true_perceptions, the default crowd; no images are needed). For each study, voters answer pairs chosen by
`perceptions.data.pairs.PairChooser`, "active" or "random" (Place Pulse's uniform pairs), one vote at a time,
exactly as synth's crowd answers (perceptions.data.crowds): the true difference plus N(0, 0.6^2) perception
noise, "equal" inside the margin that makes 13% of careful votes ties, and 4% careless answers at random. After
every half vote per image the chooser's TrueSkill state (the scores `perceptions score` would give those votes
in that order) is compared with the truth by Spearman correlation.

    .venv/bin/python -m benchmarks.active_votes             # 2,000 places, 3 seeds, six studies (~2 min)
    .venv/bin/python -m benchmarks.active_votes --quick     # 300 places, 1 seed, two studies (seconds)

Writes benchmarks/active_votes.json and docs/images/active_votes.png, and prints how many votes per image the
active choice needs to match random's Spearman at 6 votes per image.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks.common import BENCH_DIR, REPO, machine

STEP = 0.5          # votes per image between two measurements
MAX_VOTES = 8       # votes per image at the end of a run
MATCH_AT = 6        # random's votes per image that active must match
CROWD_NOISE = 0.6   # synth's default --crowd-noise
CARELESS = 0.04     # synth's default share of careless voters


def simulate(truth: np.ndarray, method: str, seed: int, candidates: int | None = None) -> list[float]:
    """Spearman(TrueSkill mu, truth) after every STEP votes per image, up to MAX_VOTES, for one study."""
    from scipy.stats import spearmanr

    from perceptions.data import crowds
    from perceptions.data.pairs import CANDIDATES, PairChooser

    n = len(truth)
    ids = [str(i) for i in range(n)]
    chooser = PairChooser(ids, method=method, seed=seed, candidates=candidates or CANDIDATES)
    rng = np.random.default_rng([seed, 99])
    margin = crowds.tie_margin(truth, CROWD_NOISE)
    votes_per_step = int(round(STEP * n / 2))  # a vote shows two images
    curve = []
    for _ in range(int(MAX_VOTES / STEP)):
        for _ in range(votes_per_step):
            left, right = chooser.next_pair()
            a, b = int(left), int(right)
            if rng.random() < CARELESS:
                choice = crowds.careless_choices(rng, 1)[0]
            else:
                choice = crowds.careful_choices(truth[a] - truth[b] + rng.normal(0, CROWD_NOISE), margin)
            chooser.add_vote(left, right, str(choice))
        curve.append(float(spearmanr(chooser.mu, truth)[0]))
    return curve


def votes_to_match(curve: np.ndarray, target: float) -> float:
    """Votes per image at which `curve` (one value per STEP) first reaches `target`, linearly interpolated."""
    grid = STEP * np.arange(1, len(curve) + 1)
    above = np.flatnonzero(curve >= target)
    if above.size == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return float(grid[0])
    return float(grid[i - 1] + STEP * (target - curve[i - 1]) / (curve[i] - curve[i - 1]))


def run(n_images: int, seeds: list[int], studies: list[str], candidates: int | None = None) -> dict:
    from perceptions.data.synthetic import sample_places, true_perceptions

    curves = {m: {s: [] for s in studies} for m in ("active", "random")}
    for seed in seeds:
        truth = true_perceptions(sample_places(n_images, 4, seed), seed)
        for study in studies:
            for method in curves:
                curves[method][study].append(simulate(truth[study].to_numpy(float), method, seed, candidates))
    # Mean over studies per seed, then mean and sd over seeds.
    per_seed = {m: np.mean([curves[m][s] for s in studies], axis=0) for m in curves}  # (seeds, steps)
    target = per_seed["random"][:, int(MATCH_AT / STEP) - 1]
    needed = [votes_to_match(per_seed["active"][i], target[i]) for i in range(len(seeds))]
    return {
        "votes_per_image": [round(STEP * (k + 1), 2) for k in range(int(MAX_VOTES / STEP))],
        "mean": {m: per_seed[m].mean(axis=0).round(4).tolist() for m in per_seed},
        "sd_over_seeds": {m: per_seed[m].std(axis=0).round(4).tolist() for m in per_seed},
        "per_study_mean": {m: {s: np.mean(curves[m][s], axis=0).round(4).tolist() for s in studies}
                           for m in curves},
        "random_at_6": round(float(target.mean()), 4),
        "active_votes_to_match_random_at_6": {"per_seed": [round(v, 2) for v in needed],
                                              "mean": round(float(np.mean(needed)), 2)},
    }


def plot(result: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(result["votes_per_image"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method, colour in (("random", "tab:grey"), ("active", "tab:blue")):
        mean, sd = np.asarray(result["mean"][method]), np.asarray(result["sd_over_seeds"][method])
        label = "random pairs (Place Pulse)" if method == "random" else "active pairs (TrueSkill)"
        ax.plot(x, mean, color=colour, marker="o", markersize=3, label=label)
        ax.fill_between(x, mean - sd, mean + sd, color=colour, alpha=0.25, linewidth=0)
    need = result["active_votes_to_match_random_at_6"]["mean"]
    ax.axhline(result["random_at_6"], color="black", linestyle=":", linewidth=1)
    if np.isfinite(need):
        ax.axvline(need, color="tab:blue", linestyle=":", linewidth=1)
        ax.annotate(f"active matches random's 6 votes/image at {need:.1f}", (need, result["random_at_6"]),
                    textcoords="offset points", xytext=(-10, -28), ha="right", fontsize=8)
    ax.set_xlabel("votes per image (each image's appearances in pairs, per study)")
    ax.set_ylabel("Spearman(TrueSkill score, truth), mean of 6 studies")
    ax.set_title(f"Choosing pairs actively: {result['n_images']:,} synthetic places, {len(result['seeds'])} seeds",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    from perceptions.studies import STUDY_NAMES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 places, one seed, two studies")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=None, help="PairChooser's candidates (default: its own)")
    parser.add_argument("--out", default=str(BENCH_DIR / "active_votes.json"))
    parser.add_argument("--figure", default=str(REPO / "docs" / "images" / "active_votes.png"))
    args = parser.parse_args()
    n, seeds, studies = args.images, list(range(args.seeds)), list(STUDY_NAMES)
    if args.quick:
        n, seeds, studies = 300, [0], studies[:2]
    t0 = time.perf_counter()
    result = {"n_images": n, "seeds": seeds, "studies": studies, "crowd_noise": CROWD_NOISE,
              "careless_share": CARELESS, "candidates": args.candidates,
              **run(n, seeds, studies, args.candidates)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["machine"] = machine()
    from pathlib import Path
    if not args.quick:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        plot(result, Path(args.figure))
    print(json.dumps({k: result[k] for k in ("random_at_6", "active_votes_to_match_random_at_6", "seconds")}))
    print(f"random at {MATCH_AT} votes per image: Spearman {result['random_at_6']:.3f}; active reaches it at "
          f"{result['active_votes_to_match_random_at_6']['mean']:.2f} votes per image")


if __name__ == "__main__":
    main()
