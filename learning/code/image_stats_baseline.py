"""Baselines before any CNN: a linear model on five simple image statistics, against the same linear model on
the backbone's 1,280 features, on the validation split of several seeds.

    python learning/code/image_stats_baseline.py --data /tmp/ch6_ex1/city --cache /tmp/ch6_ex1/features.pt \
        --seeds 0,1,2 --out FIGURES

The statistics (image_statistics) are what a person might measure with a few lines of numpy: how bright the
picture is, how much of it is green, how much is sky, how busy it is with edges, how colourful. Both models
are ridge regressions (least squares with a penalty on the weights) fitted on the training split, the penalty
chosen by 5-fold cross-validation inside the training split, so the validation images are used for nothing but
the comparison. They are scored with the metrics `perceptions train` logs for validation (`val_spearman`,
`val_within1`), next to the decile accuracy of a constant and of random ranks
(perceptions/evaluate/baselines.py), and with the k-nearest-neighbour prediction of feature_space.py.

Writes learning_06_baselines.png.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from city_features import cached_or_built, city_split, figure_path, parse_seeds, rows_of, run, save_figure, \
    validation_report, with_seed
from conv_by_hand import edge_magnitude, to_gray

STATISTICS = ("brightness", "greenery", "sky", "edge_density", "colourfulness")
SIDE = 128                   # statistics are measured on the picture shrunk to 128 px high
ALPHAS = 10.0 ** np.arange(-3, 5)


def image_statistics(rgb: np.ndarray) -> dict[str, float]:
    """(H, W, 3) RGB in 0..1 -> the five statistics of STATISTICS.

    brightness: mean luma (0.299 R + 0.587 G + 0.114 B); greenery: share of pixels whose green exceeds both red
    and blue by 0.04 (foliage and grass); sky: share of the upper half whose blue is the largest channel and
    whose luma is above 0.35 (a day sky; a night or fog sky does not count, which a reader of the weights
    should remember); edge_density: share of pixels whose Sobel edge magnitude exceeds 0.5 (busy facades,
    people, clutter); colourfulness: Hasler and Suesstrunk's (2003) measure on the red-green and yellow-blue
    opponent channels.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    top = rgb[: rgb.shape[0] // 2]
    sky = (top[..., 2] >= top[..., :2].max(axis=-1)) & (luma[: rgb.shape[0] // 2] > 0.35)
    gray = to_gray(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float())
    rg, yb = r - g, 0.5 * (r + g) - b
    return {
        "brightness": float(luma.mean()),
        "greenery": float(((g > r + 0.04) & (g > b + 0.04)).mean()),
        "sky": float(sky.mean()),
        "edge_density": float((edge_magnitude(gray) > 0.5).float().mean()),
        "colourfulness": float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())),
    }


def statistics_of(paths) -> np.ndarray:
    """(N, len(STATISTICS)) for image files, each shrunk to SIDE px high first."""
    from perceptions.runtime import cpu_threads

    rows = []
    # One thread: on a 128 px picture, threads only wait for each other (x20 slower on 2 busy cores).
    with cpu_threads(1):
        for path in paths:
            with Image.open(path) as im:
                im = im.convert("RGB").resize((round(im.width * SIDE / im.height), SIDE), Image.BILINEAR)
                stats = image_statistics(np.asarray(im, dtype=np.float32) / 255)
            rows.append([stats[s] for s in STATISTICS])
    return np.asarray(rows, dtype=np.float64)


def ridge(x: np.ndarray, y: np.ndarray, alphas) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ridge regressions of y (n, t) on x (n, p), one per alpha, with the columns of x standardised (z) and an
    unpenalised intercept: [(weights (p, t) on the standardised columns, intercepts (t,))].

    w = (z'z + alpha I)^-1 z' y = z' (z z' + alpha I)^-1 y; one eigendecomposition of the smaller of z'z (p x p)
    and z z' (n x n) serves every alpha."""
    z = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-12)
    yc = y - y.mean(axis=0)
    if z.shape[1] <= z.shape[0]:
        lam, v = np.linalg.eigh(z.T @ z)
        vzy = v.T @ (z.T @ yc)
        return [(v @ (vzy / (lam + a)[:, None]), y.mean(axis=0)) for a in alphas]
    lam, u = np.linalg.eigh(z @ z.T)
    uy = u.T @ yc
    return [(z.T @ (u @ (uy / (lam + a)[:, None])), y.mean(axis=0)) for a in alphas]


class Ridge:
    """A ridge regression per target column, its penalty chosen by k-fold cross-validation on the rows it is
    fitted on (the validation split is never seen); rows with a NaN target are left out of that column's fit."""

    def __init__(self, alphas=ALPHAS, folds: int = 5, seed: int = 0):
        self.alphas, self.folds, self.seed = list(alphas), folds, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> "Ridge":
        self.models, self.chosen = [], []
        # Columns rated on the same images share their fits (every column, on a synthetic city).
        masks = {}
        for j in range(y.shape[1]):
            masks.setdefault(np.isfinite(y[:, j]).tobytes(), []).append(j)
        fitted = {}
        for key, cols in masks.items():
            ok = np.frombuffer(key, dtype=bool)
            for j, model in zip(cols, self._fit_columns(x[ok], y[ok][:, cols])):
                fitted[j] = model
        self.models = [fitted[j] for j in range(y.shape[1])]
        return self

    def _fit_columns(self, x: np.ndarray, y: np.ndarray) -> list[tuple]:
        fold = np.random.default_rng(self.seed).permutation(len(y)) % self.folds
        errors = np.zeros((len(self.alphas), y.shape[1]))
        for f in range(self.folds):
            fit_rows, held = fold != f, fold == f
            m, sd = x[fit_rows].mean(axis=0), x[fit_rows].std(axis=0) + 1e-12
            for i, (w, b) in enumerate(ridge(x[fit_rows], y[fit_rows], self.alphas)):
                errors[i] += np.sum(((x[held] - m) / sd @ w + b - y[held]) ** 2, axis=0)
        best = errors.argmin(axis=0)
        fits = ridge(x, y, self.alphas)
        m, sd = x.mean(axis=0), x.std(axis=0) + 1e-12
        self.chosen += [self.alphas[i] for i in best]
        return [(fits[i][0][:, j], fits[i][1][j], m, sd) for j, i in enumerate(best)]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.stack([(x - m) / sd @ w + b for w, b, m, sd in self.models], axis=1)

    def standardised_weights(self) -> np.ndarray:
        """(columns of x, targets): the change of each target per standard deviation of each input."""
        return np.stack([w for w, _, _, _ in self.models], axis=1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a city made by `perceptions synth`")
    parser.add_argument("--cache", help="feature cache of feature_space.py (computed and written if missing)")
    parser.add_argument("--seeds", default="0,1,2", help="splits to compare on, as `perceptions train --seed`")
    parser.add_argument("--out", required=True, help="folder for the figure")
    parser.add_argument("--overwrite", action="store_true", help="replace a figure that exists")
    args = parser.parse_args(argv)
    from feature_space import knn_predict

    name = "learning_06_baselines.png"
    figure_path(args.out, name, args.overwrite)
    seeds = parse_seeds(args.seeds)
    cache = cached_or_built(args.cache, args.data)
    first = city_split(args.data, seeds[0])
    stats = statistics_of(first.table["path"])          # the table's rows are the same for every seed
    print("image statistics (mean over the city): " + ", ".join(
        f"{s} {v:.3f}" for s, v in zip(STATISTICS, stats.mean(axis=0))))
    results = {"image statistics (5)": [], "CNN features, 10-NN": [], "CNN features, ridge (1280)": []}
    for seed in seeds:
        data = with_seed(first, seed)
        feats = cache["features"][rows_of(cache, data)].double().numpy()
        train, val = data.rows("train"), data.rows("val")
        on_stats = Ridge(seed=seed).fit(stats[train], data.targets[train])
        on_features = Ridge(seed=seed).fit(feats[train], data.targets[train])
        knn = knn_predict(torch.from_numpy(feats[train]), data.targets[train], torch.from_numpy(feats[val]))
        reports = [validation_report(on_stats.predict(stats[val]), data),
                   validation_report(knn, data), validation_report(on_features.predict(feats[val]), data)]
        for (model, runs), report in zip(results.items(), reports):
            runs.append(report)
            print(f"seed {seed} ({len(train)} train / {len(val)} val images) {model:27s} " +
                  ", ".join(f"{k} {report[k]:.3f}" for k in ("val_spearman", "val_within1", "spearman_truth")))
        print(f"seed {seed} baselines: baseline_constant_within_1_decile "
              f"{reports[0]['baseline_constant_within_1_decile']:.3f}, baseline_random_within_1_decile "
              f"{reports[0]['baseline_random_within_1_decile']:.3f}")
        if seed == seeds[0]:
            weights, studies = on_stats.standardised_weights(), data.studies
    print(f"over seeds {args.seeds}: mean (min..max)")
    for model, runs in results.items():
        v = np.array([r["val_spearman"] for r in runs])
        print(f"  {model:27s} val_spearman {v.mean():.3f} ({v.min():.3f}..{v.max():.3f})")
    print("weights of the image-statistics model (scaled score per standard deviation), seed", seeds[0])
    print("  " + " ".join(f"{s:>13s}" for s in STATISTICS))
    for j, s in enumerate(studies):
        print(f"  {s:10s}" + " ".join(f"{w:+13.2f}" for w in weights[:, j]))
    draw(results, weights, studies, args.out, name, args.overwrite)


def draw(results, weights, studies, out, name, overwrite) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1, 1, 1.15]})
    models = list(results)
    for ax, metric in zip(axes[:2], ("val_spearman", "val_within1")):
        for i, model in enumerate(models):
            values = [r[metric] for r in results[model]]
            ax.bar(i, np.mean(values), color=f"C{i}", alpha=0.7)
            ax.plot([i] * len(values), values, "k.", ms=8)
        if metric == "val_within1":
            runs = results[models[0]]
            for key, label, style in (("baseline_constant_within_1_decile", "constant", "--"),
                                      ("baseline_random_within_1_decile", "random ranks", ":")):
                ax.axhline(np.mean([r[key] for r in runs]), color="gray", ls=style, label=label)
            ax.legend(fontsize=8, loc="lower right")
        ax.set_xticks(range(len(models)), [m.replace(", ", ",\n") for m in models], fontsize=8)
        ax.set_title(f"{metric} (bars: mean, dots: seeds)", fontsize=10)
    lim = np.abs(weights).max()
    im = axes[2].imshow(weights.T, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[2].set_xticks(range(len(STATISTICS)), STATISTICS, rotation=30, fontsize=8)
    axes[2].set_yticks(range(len(studies)), studies, fontsize=8)
    axes[2].set_title("image-statistics model: weight per standard deviation", fontsize=10)
    fig.colorbar(im, ax=axes[2])
    fig.suptitle("Validation split: a linear model on 5 image statistics against CNN features")
    fig.tight_layout()
    save_figure(fig, out, name, overwrite)


if __name__ == "__main__":
    run(main)
