"""The backbone's pooled features as a space: a PCA of every image, coloured by city and by the truth, and the
nearest neighbours of a few validation images among the training images.

    python learning/code/feature_space.py --data /tmp/ch6_ex1/city --cache /tmp/ch6_ex1/features.pt --out FIGURES

Each image becomes 1,280 numbers (EfficientNet-Lite0's pooled features at 128 px, computed once and cached in
--cache for the other scripts of the chapter). Principal component analysis finds the directions along which
those vectors vary most; two of them make a map of the city's images. Nearest neighbours use the cosine
similarity of the vectors. A k-nearest-neighbour prediction (the mean 1..10 label of the k most similar
training images) is also the simplest model on these features: it needs no training at all.

Writes learning_06_pca.png and learning_06_neighbours.png.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from city_features import cached_or_built, city_split, figure_path, rows_of, run, save_figure, validation_report


def pca(features: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F) -> (N, k) coordinates on the first k principal components, and the share of the variance each
    explains. The features are centred (not scaled: every feature is on the same post-ReLU6 scale)."""
    x = features.double() - features.double().mean(dim=0)
    _, s, vt = torch.linalg.svd(x, full_matrices=False)
    share = s ** 2 / (s ** 2).sum()
    return (x @ vt[:k].T).float(), share[:k].float()


def nearest_neighbours(queries: torch.Tensor, pool: torch.Tensor, k: int) -> torch.Tensor:
    """(Q, F), (P, F) -> (Q, k) indices into pool of the k most similar rows by cosine similarity, best first."""
    q = torch.nn.functional.normalize(queries.double(), dim=1)
    p = torch.nn.functional.normalize(pool.double(), dim=1)
    return (q @ p.T).topk(k, dim=1).indices


def knn_predict(train_x: torch.Tensor, train_y: np.ndarray, query_x: torch.Tensor, k: int = 10) -> np.ndarray:
    """The mean target of the k nearest training images (NaN targets left out) for every query."""
    idx = nearest_neighbours(query_x, train_x, k).numpy()
    with np.errstate(invalid="ignore"):
        return np.nanmean(train_y[idx], axis=1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a city made by `perceptions synth`")
    parser.add_argument("--cache", help="feature cache: read if it exists, else computed and written there")
    parser.add_argument("--study", default="safe", help="the study whose truth colours the PCA")
    parser.add_argument("--seed", type=int, default=0, help="the split (as `perceptions train --seed`)")
    parser.add_argument("--k", type=int, default=10, help="neighbours averaged by the k-NN prediction")
    parser.add_argument("--out", required=True, help="folder for the figures")
    parser.add_argument("--overwrite", action="store_true", help="replace figures that exist")
    args = parser.parse_args(argv)
    names = ("learning_06_pca.png", "learning_06_neighbours.png")
    for name in names:
        figure_path(args.out, name, args.overwrite)

    cache = cached_or_built(args.cache, args.data)
    data = city_split(args.data, args.seed)
    rows = rows_of(cache, data)                 # cache row of every row of data.table
    feats = cache["features"][rows]
    studies = data.studies
    colour = (cache["truth"] if cache["truth"] is not None else cache["labels"])[rows][:, studies.index(args.study)]
    coords, share = pca(feats)
    print(f"{len(feats)} images x {feats.shape[1]} features; the first two principal components explain "
          f"{share[0]:.1%} and {share[1]:.1%} of the variance")
    from perceptions.evaluate.metrics import spearman
    for pc in range(2):
        rho = {s: spearman(coords[:, pc].numpy(), (cache["truth"] if cache["truth"] is not None
                                                   else cache["labels"])[rows][:, j].numpy())
               for j, s in enumerate(studies)}
        top = max(rho, key=lambda s: abs(rho[s]))
        print(f"PC{pc + 1}: largest |Spearman| with a study's truth: {top} {rho[top]:+.2f}")

    train, val = data.rows("train"), data.rows("val")
    near = nearest_neighbours(feats[val], feats[train], 5).numpy()
    cities = np.asarray(data.table["city"].astype(str))
    same = (cities[train][near] == cities[val][:, None]).mean()
    chance = np.mean([(cities[train] == c).mean() for c in cities[val]])
    print(f"same_city_share of the 5 nearest training images of each validation image: {same:.2f} "
          f"(by chance: {chance:.2f})")
    knn = knn_predict(feats[train], data.targets[train], feats[val], args.k)
    report = validation_report(knn, data)
    print(f"{args.k}-NN on the features, validation: " + ", ".join(f"{k} {v:.3f}" for k, v in report.items()))

    draw_pca(coords, share, cities, colour.numpy(), args.study, cache["truth"] is not None, args.out, names[0],
             args.overwrite)
    paths = data.table["path"].to_numpy()
    draw_neighbours(paths[val], paths[train], near, colour.numpy()[val], colour.numpy()[train], cities[val],
                    cities[train], args.study, args.out, names[1], args.overwrite)


def draw_pca(coords, share, cities, colour, study, is_truth, out, name, overwrite) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for city in sorted(set(cities)):
        at = cities == city
        axes[0].scatter(coords[at, 0], coords[at, 1], s=7, alpha=0.6, label=city)
    axes[0].legend(markerscale=2, fontsize=8)
    axes[0].set_title("coloured by city")
    dots = axes[1].scatter(coords[:, 0], coords[:, 1], s=7, c=colour, cmap="RdYlGn", alpha=0.8)
    fig.colorbar(dots, ax=axes[1], label=f"{study} ({'truth' if is_truth else 'label'})")
    axes[1].set_title(f"coloured by the {'true' if is_truth else 'crowd'} {study} score")
    for ax in axes:
        ax.set_xlabel(f"PC1 ({share[0]:.0%} of the variance)")
        ax.set_ylabel(f"PC2 ({share[1]:.0%})")
    fig.suptitle("Pooled backbone features of every image, projected on their first two principal components")
    fig.tight_layout()
    save_figure(fig, out, name, overwrite)


def draw_neighbours(query_paths, pool_paths, near, query_value, pool_value, query_city, pool_city, study, out,
                    name, overwrite, n_queries: int = 4) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    n_queries = min(n_queries, len(query_paths))
    # Queries spread over the study's range: the lowest, the highest and two between.
    order = np.argsort(query_value)
    picks = order[np.linspace(0, len(order) - 1, n_queries).round().astype(int)]
    fig, axes = plt.subplots(n_queries, 1 + near.shape[1], figsize=(2.6 * (1 + near.shape[1]), 2.3 * n_queries),
                             squeeze=False)
    for row, q in zip(axes, picks):
        row[0].imshow(Image.open(query_paths[q]))
        row[0].set_title(f"query: {query_city[q]}\n{study} {query_value[q]:+.2f}", fontsize=9, color="blue")
        for ax, p in zip(row[1:], near[q]):
            ax.imshow(Image.open(pool_paths[p]))
            ax.set_title(f"{pool_city[p]}\n{study} {pool_value[p]:+.2f}", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle("Validation images (left) and their nearest training images in feature space (cosine)")
    fig.tight_layout()
    save_figure(fig, out, name, overwrite, dpi=80)


if __name__ == "__main__":
    run(main)
