"""A shortcut: a watermark stamped on the training images of one study's top half, and nowhere else.

Think of a photo agency whose pictures all show pleasant streets: in its images, the watermark says "high
score" more reliably than anything in the street. Here the watermark is stamped on every image whose label in
`--study` is above the training median, either in the TRAINING split only (validation and test stay clean, as
a reader's new photographs would) or in every split (the agency's images were split at random like the
rest). Heads are fitted on the cached features of the same images, clean or stamped, and scored:
  val_spearman            the study's validation Spearman, on the validation images as that condition has them:
                          does validation see the shortcut?
  test_spearman           the study's Spearman on the clean test images: the photographs of tomorrow
  stamped_shift           how far stamping every test image moves the study's predicted score, in standard
                          deviations of the labels: what the head learnt from the watermark itself

    python learning/code/wrong_watermark.py FEATURES.npz [--study safe] [--seeds 5] [--figures DIR]
(FEATURES.npz from `wrong_features.py --with-watermark` holds the stamped pictures' features too; otherwise they
are computed here.)
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

import wrong_features as W
from perceptions.studies import STUDY_NAMES

TEXT = "(c) PhotoCo"
BOX = (62, 252, 172, 280)   # left, top, right, bottom in the 400 x 300 scene: inside the square the model sees


def stamp(picture):
    """The picture with a watermark box in its lower left, where the 128-px model still sees it (the centre
    crop keeps columns 50-350 of a 400-px scene); other sizes are scaled to the same place."""
    from PIL import ImageDraw, ImageFont

    picture = picture.convert("RGB").copy()
    sx, sy = picture.width / 400, picture.height / 300
    left, top, right, bottom = BOX[0] * sx, BOX[1] * sy, BOX[2] * sx, BOX[3] * sy
    draw = ImageDraw.Draw(picture)
    draw.rectangle((left, top, right, bottom), fill=(250, 250, 250), outline=(200, 30, 30), width=2)
    font = ImageFont.load_default(size=max(8, int(16 * sy)))
    draw.text((left + 6 * sx, top + 5 * sy), TEXT, fill=(200, 30, 30), font=font)
    return picture


def stamped_rows(table, parts: np.ndarray, study: str, splits=("train",)) -> np.ndarray:
    """True for the images of `splits` whose `study` label is above the training split's median: the only
    images that carry the watermark."""
    score = table[study].to_numpy(float)
    median = np.nanmedian(score[parts == "train"])
    return np.isin(parts, splits) & (score > median)


def stamped_features(table) -> np.ndarray:
    """Features of every image with the watermark (computed once; each seed picks the rows it stamps)."""
    return W.compute_features(list(table["path"]), edits=(stamp,))[0]


CONDITIONS = {"clean": (), "train only": ("train",), "every split": ("train", "val", "test")}


def compare(table, x, x_stamped, study: str, seeds: int) -> pd.DataFrame:
    """One row per (condition, seed). Conditions: no watermark; the watermark on the training split's top half
    only; on the top half of every split (one source for all the data, as when a split is random)."""
    y = W.labels(table)
    j = list(STUDY_NAMES).index(study)
    sd = np.nanstd(y[:, j])
    rows = []
    for seed in range(seeds):
        parts = W.split(table, seed)
        val, test = parts == "val", parts == "test"
        for name, splits in CONDITIONS.items():
            features = np.where(stamped_rows(table, parts, study, splits)[:, None], x_stamped, x)
            head = W.fit_on_validation(features, y, parts)  # the penalty chosen on validation as it is here
            plain, stamped = head.predict(x[test])[:, j], head.predict(x_stamped[test])[:, j]
            rows.append({"watermark": name, "seed": seed,
                         "val_spearman": W.mean_spearman(head.predict(features[val])[:, [j]], y[val][:, [j]]),
                         "test_spearman": W.mean_spearman(plain[:, None], y[test][:, [j]]),
                         "stamped_shift": float(np.mean(stamped - plain) / sd)})
    return pd.DataFrame(rows)


def write_stamped_city(city, out, study: str, seed: int = 0) -> int:
    """A copy of `city` whose training images (split seed `seed`) of the study's top half are stamped, for
    `perceptions train --data OUT --seed SEED` (the run's split is then the same). Returns the count."""
    out = Path(out)
    if out.exists():
        raise W.PerceptionsError(f"{out} already exists; choose a new folder")
    table = W.city_table(city)
    marked = stamped_rows(table, W.split(table, seed), study)
    (out / "images").mkdir(parents=True)
    for name in ("votes.tsv", "qscores.tsv", "truth.csv"):
        shutil.copy2(Path(city) / name, out / name)
    from PIL import Image

    for path, mark in zip(table["path"], marked):
        target = out / "images" / Path(path).name
        if mark:
            with Image.open(path) as picture:
                stamp(picture).save(target, "JPEG", quality=90)
        else:
            shutil.copy2(path, target)
    return int(marked.sum())


def plot(results: pd.DataFrame, example, study: str, folder) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6), layout="constrained")
    picture, *axes = fig.subplots(1, 3, width_ratios=[1.4, 1, 1])
    picture.imshow(np.asarray(stamp(example)))
    picture.set_title(f"the watermark, on the images of {study}'s top half", fontsize=9)
    picture.set_axis_off()
    names = list(CONDITIONS)
    for ax, metric in zip(axes, ("val_spearman", "stamped_shift")):
        for k, name in enumerate(names):
            values = results.loc[results["watermark"] == name, metric]
            ax.scatter(np.full(len(values), k), values, color=f"C{k}", s=18)
            ax.errorbar(k + 0.18, values.mean(), yerr=values.std(ddof=1) if len(values) > 1 else 0, fmt="_",
                        color="k", capsize=4)
        ax.set_xticks(range(len(names)), [f"stamped:\n{n}" for n in names], fontsize=8)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{study}: validation Spearman", fontsize=9)
    axes[1].set_title(f"{study}: shift when a test image is stamped (sd)", fontsize=9)
    axes[1].axhline(0, color="grey", lw=0.8)
    return W.save_figure(fig, folder, "watermark")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", help="wrong_features.py's .npz of a synthetic city")
    parser.add_argument("--study", default="safe", choices=STUDY_NAMES)
    parser.add_argument("--seeds", type=int, default=5, help="split seeds 0..N-1")
    parser.add_argument("--figures", help="folder to write the figure into")
    parser.add_argument("--city-out", help="also write a stamped copy of the city (split seed 0) here, to train "
                                           "on with `perceptions train`")
    args = parser.parse_args(argv)
    table, x, x_stamped = W.load_features(args.features, stamped=True)
    if x_stamped is None:   # not cached by wrong_features.py --with-watermark: compute them now
        x_stamped = stamped_features(table)
    results = compare(table, x, x_stamped, args.study, args.seeds)
    print(f"{args.study}, mean +- sd over {args.seeds} split seeds (test_spearman: clean test images)")
    for name, group in results.groupby("watermark", sort=False):
        print(f"  watermark on {name:11s}: val_spearman {W.spread(group['val_spearman'])}, test_spearman "
              f"{W.spread(group['test_spearman'])}, stamped_shift {W.spread(group['stamped_shift'])}")
    clean = results[results["watermark"] == "clean"].set_index("seed")
    for name in list(CONDITIONS)[1:]:
        other = results[results["watermark"] == name].set_index("seed")
        print(f"  paired with clean, seed by seed ({name}): val_spearman "
              f"{W.spread(other['val_spearman'] - clean['val_spearman'])}, test_spearman "
              f"{W.spread(other['test_spearman'] - clean['test_spearman'])}")
    if args.figures:
        from PIL import Image

        with Image.open(table["path"].iloc[0]) as example:
            print(f"figure: {plot(results, example.convert('RGB'), args.study, args.figures)}")
    if args.city_out:
        with np.load(args.features) as saved:
            city = str(saved["city"])
        count = write_stamped_city(city, args.city_out, args.study)
        print(f"wrote {args.city_out}: {count} training images stamped")


if __name__ == "__main__":
    W.run_main(main)
