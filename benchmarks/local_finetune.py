"""Does fine-tuning the shipped model on a few local votes beat it on that city's held-out votes?

The city: `perceptions synth --crowd local` (a crowd that weighs the scene differently from the one the shipped
model learnt: perceptions/data/crowds.py), 1,200 scenes of 4 cities drawn with seed 1 (the shipped model was
trained on seed 0's scenes, so it has seen none of these), 20 votes per image and study so that enough votes
fall between held-out images. Its images are split as `perceptions train` splits them (hash of the location id,
seed 0, 10% validation, 20% test). For N = 100, 300 and 1,000 local votes (all six studies together) and a few
seeds, N votes are sampled from the votes between TRAINING images, written with their images to a folder, scored
with `perceptions score`'s TrueSkill, and the shipped model/ is fine-tuned on that folder with
`perceptions train --init-model model` (its defaults for this case, train/init_model.py). Each fine-tuned model
and the base model are then compared by `perceptions evaluate --compare-model` on the votes between TEST images
(ties excluded), paired over the same votes.

`--choose` runs the settings grid that chose those defaults, at N = 300 (seed 0), on the votes between
VALIDATION images only (the fine-tuned models never see validation or test images), and writes it to the
JSON's "choice". Only the head is fine-tuned (on backbone features computed once): on this project's shared
2-core machine a run that also fine-tunes the backbone costs several times more, and the grid's question is how
far a few hundred votes should move the model.

    .venv/bin/python -m benchmarks.local_finetune --choose   # the defaults' grid, on validation (~15 min, 2 busy cores)
    .venv/bin/python -m benchmarks.local_finetune            # N = 100, 300, 1000 x 2 seeds + all, on test (~30 min)

Writes benchmarks/local_finetune.json and docs/images/local_finetune.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import BENCH_DIR, REPO, WORK, machine

CITY = {"n_images": 1200, "n_cities": 4, "votes_per_image": 20, "seed": 1, "crowd": "local"}
SIZES = (100, 300, 1000)
GRID = {  # name -> TrainConfig settings (absolute, so the grid keeps its meaning when the defaults change)
    "head_ranking_lr3e-4": {"freeze_epochs": 40, "epochs": 0, "head_lr_frozen": 3e-4, "loss": "ranking"},
    "head_ranking_lr1e-3": {"freeze_epochs": 40, "epochs": 0, "head_lr_frozen": 1e-3, "loss": "ranking"},
    "head_ranking_lr3e-3": {"freeze_epochs": 40, "epochs": 0, "head_lr_frozen": 3e-3, "loss": "ranking"},
    "head_ranking_lr1e-2": {"freeze_epochs": 40, "epochs": 0, "head_lr_frozen": 1e-2, "loss": "ranking"},
    "head_ranking_lr3e-2": {"freeze_epochs": 40, "epochs": 0, "head_lr_frozen": 3e-2, "loss": "ranking"},
    "head_both_lr1e-2": {"freeze_epochs": 40, "epochs": 0, "head_lr_frozen": 1e-2, "loss": "both"},
}
OUT = BENCH_DIR / "local_finetune.json"
FIGURE = REPO / "docs" / "images" / "local_finetune.png"


def ensure_city(folder: Path) -> Path:
    from perceptions.data.synthetic import generate_city

    marker = folder / "city.json"
    if marker.is_file():
        made = json.loads(marker.read_text())
        if all(made.get(k) == v for k, v in (("images", CITY["n_images"]), ("seed", CITY["seed"]),
                                              ("crowd", CITY["crowd"]), ("votes_per_image", CITY["votes_per_image"]))):
            return folder
    generate_city(folder, overwrite=True, progress=False, **CITY)
    return folder


def city_split(city: Path) -> pd.Series:
    """location_id -> train/val/test, as `perceptions train` (defaults: random, seed 0, 0.1, 0.2) splits."""
    from perceptions.data.labels import split_from_spec, split_spec
    from perceptions.data.placepulse import list_images

    images = list_images(city / "images")
    split = split_from_spec(images, split_spec(images, "random", 0, 0.1, 0.2))
    return pd.Series(split.to_numpy(), index=images["location_id"].astype(str).to_numpy())


def local_folder(city: Path, votes: pd.DataFrame, folder: Path) -> Path:
    """A PP2 folder of the voted images (symlinks), the votes and their TrueSkill scores (`perceptions score`)."""
    from perceptions.data.placepulse import list_images
    from perceptions.data.scoring import score_file

    if folder.exists():
        shutil.rmtree(folder)
    (folder / "images").mkdir(parents=True)
    images = list_images(city / "images")
    voted = set(votes["left"]) | set(votes["right"])
    for path in images.loc[images["location_id"].isin(voted), "path"]:
        os.symlink(Path(path).resolve(), folder / "images" / Path(path).name)
    votes.to_csv(folder / "votes.tsv", sep="\t", index=False)
    score_file(folder / "votes.tsv", folder / "qscores.tsv")
    return folder


def fine_tune(folder: Path, out: Path, seed: int, overrides: dict) -> Path:
    """`perceptions train --init-model model --data folder` with INIT_MODEL_DEFAULTS under `overrides`."""
    from perceptions.train.config import TrainConfig
    from perceptions.train.init_model import with_init_defaults
    from perceptions.train.loop import train

    typed = {"data": str(folder), "out": str(out), "init_model": str(REPO / "model"), "seed": seed,
             "progress": False, "device": "cpu", "workers": 0, **overrides}
    return Path(train(with_init_defaults(TrainConfig(**typed), typed)))


def compare(run_dir: Path, city: Path, split: str) -> dict:
    """`perceptions evaluate --model RUN/model --compare-model model --data CITY --split SPLIT`'s comparison."""
    from perceptions.evaluate.run import compare_models

    _, table = compare_models(run_dir / "model", REPO / "model", city, split=split, progress=False)
    return table


def sample_votes(votes: pd.DataFrame, split: pd.Series, n: int | None, seed: int) -> pd.DataFrame:
    """n votes drawn at random from those between training images (n None: all of them)."""
    both_train = (votes["left"].map(split) == "train") & (votes["right"].map(split) == "train")
    pool = votes[both_train.to_numpy()]
    return pool if n is None else pool.sample(n=n, random_state=seed).sort_values("timestamp", kind="stable")


def one(city, votes, split, n, seed, overrides, eval_split, tag) -> dict:
    t0 = time.perf_counter()
    chosen = sample_votes(votes, split, n, seed)
    folder = local_folder(city, chosen, WORK / "local_finetune" / f"data_{tag}")
    # The run's seed stays 0: `perceptions train` splits by (location id, seed), so another seed would move
    # images between splits; the seeds of this benchmark vary which votes are sampled.
    run_dir = fine_tune(folder, WORK / "local_finetune" / "runs", 0, overrides)
    table = compare(run_dir, city, eval_split)
    n = len(chosen)
    row = {"tag": tag, "votes": n, "all_training_votes": tag.startswith("Nall"), "seed": seed,
           "overrides": overrides, "run": run_dir.name, "seconds": round(time.perf_counter() - t0, 1),
           "pairwise": table}
    a = table["all"]
    lo, hi = a["difference_ci95"]
    print(f"{tag}: N={n} seed={seed} {eval_split} votes {a['votes']}: base {a['compare']:.4f}, fine-tuned "
          f"{a['model']:.4f} ({a['difference']:+.4f} [{lo:+.4f}, {hi:+.4f}]) in {row['seconds']:.0f} s", flush=True)
    return row


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pd.DataFrame([{"votes": r["votes"], "seed": r["seed"], "base": r["pairwise"]["all"]["compare"],
                           "tuned": r["pairwise"]["all"]["model"], "everything": r.get("all_training_votes", False)}
                          for r in result["runs"]])
    runs, everything = table[~table["everything"]], table[table["everything"]]
    by = runs.groupby("votes")
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    base = runs["base"].iloc[0]
    ax.axhline(base, color="tab:grey", linestyle="--", label=f"shipped model, no local votes ({base:.3f})")
    x = np.asarray(sorted(by.groups))
    mean, sd = by["tuned"].mean().to_numpy(), by["tuned"].std(ddof=0).to_numpy()
    ax.plot(x, mean, color="tab:blue", marker="o", label="fine-tuned on N local votes (--init-model)")
    ax.fill_between(x, mean - sd, mean + sd, color="tab:blue", alpha=0.25, linewidth=0)
    ax.scatter(runs["votes"], runs["tuned"], color="tab:blue", s=10, alpha=0.6)
    ticks = list(x)
    if len(everything):
        n_all, acc = int(everything["votes"].iloc[0]), float(everything["tuned"].iloc[0])
        ax.scatter([n_all], [acc], color="tab:green", marker="s", zorder=3,
                   label=f"every training vote ({n_all:,}), same recipe ({acc:.3f})")
        ticks.append(n_all)
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{v:,}" for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel("local votes fine-tuned on (six studies together)")
    ax.set_ylabel("pairwise accuracy, held-out local votes (ties excl.)")
    n_votes = result["runs"][0]["pairwise"]["all"]["votes"]
    ax.set_title(f"A crowd that weighs the scene differently: {n_votes:,} held-out votes, "
                 f"{runs['seed'].nunique()} seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    import torch

    from perceptions.data.placepulse import read_votes
    from perceptions.train.init_model import INIT_MODEL_DEFAULTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choose", action="store_true", help="run the settings grid on validation votes")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)) + ",all",
                        help="numbers of local votes; 'all': every vote between training images (one seed)")
    parser.add_argument("--only", help="comma list of grid entries for --choose")
    parser.add_argument("--rerun", action="store_true", help="redo runs the JSON already holds")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    city = ensure_city(WORK / "local_city")
    split = city_split(city)
    raw = pd.read_csv(city / "votes.tsv", sep="\t", dtype=str)
    assert len(raw) == len(read_votes(city / "votes.tsv"))
    result = json.loads(OUT.read_text()) if OUT.is_file() else {}
    result.update({"city": CITY, "split_counts": split.value_counts().to_dict(), "init_model_defaults":
                   INIT_MODEL_DEFAULTS, "machine": machine()})
    if args.choose:
        names = args.only.split(",") if args.only else list(GRID)
        choice = result.get("choice", {})
        for name in names:
            choice[name] = one(city, raw, split, 300, 0, GRID[name], "val", f"choose_{name}")
            result["choice"] = choice
            OUT.write_text(json.dumps(result, indent=2) + "\n")
    else:
        # Runs already in the JSON with today's defaults are kept (so more seeds can be added); --rerun redoes.
        runs = [r for r in result.get("runs", []) if not args.rerun and r.get("defaults") == INIT_MODEL_DEFAULTS]
        done = {r.get("tag") for r in runs}
        for size in args.sizes.split(","):
            # "all": every vote between training images, once: what this head can learn from this city at most.
            for seed in range(1 if size == "all" else args.seeds):
                n = None if size == "all" else int(size)
                if f"N{size}_s{seed}" in done:
                    continue
                runs.append({**one(city, raw, split, n, seed, {}, "test", f"N{size}_s{seed}"),
                             "defaults": INIT_MODEL_DEFAULTS})
                result["runs"] = runs
                OUT.write_text(json.dumps(result, indent=2) + "\n")
        plot(result, FIGURE)
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
