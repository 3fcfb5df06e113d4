"""Reading Grad-CAM critically: five checks of the maps `perceptions explain` draws, on a few scenes.

1. resolution     the size of the last feature map, hence of every map, at several input sizes;
2. normalisation  how strong the positive evidence behind each map is before it is rescaled to 0..1;
3. negative       how much of the evidence the ReLU throws away (cells that LOWER the score);
4. sanity         Adebayo et al. (2018)'s cascading randomisation: re-initialise the network from the top down
                  and measure how much each method's map still resembles the trained network's (Spearman over
                  pixels); a method whose maps do not change does not show what the network learnt;
5. deletion       grey out the map's 16 cells one at a time, hottest first, at random, or coldest first, and
                  watch the score: if the map is right, deleting the hottest cells lowers it fastest.

    python learning/code/gradcam_checks.py CITY [--scenes 8] [--study safe] [--model PKG] [--figures DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import gradcam_maps as G
import wrong_features as W
from perceptions.studies import STUDY_NAMES

RANDOM_ORDERS = 4


def scene_paths(folder, scenes: int) -> list[str]:
    from perceptions.data.placepulse import list_images

    folder = Path(folder)
    paths = list(list_images(folder / "images" if (folder / "images").is_dir() else folder)["path"])
    if not paths:
        raise W.PerceptionsError(f"{folder}: no images")
    return paths[:scenes]


def evidence(model, inputs) -> pd.DataFrame:
    """Per scene and study: the score, the largest positive cell (the evidence a shown map is scaled by), and
    the share of the map's total |evidence| that is negative."""
    rows = []
    size = model.preprocess.input_size
    layer = model.net.get_submodule(G.target_layer_name(model.net, size))
    for k, x in enumerate(inputs):
        cams, scores = G.signed_cams(model.net, x, range(len(model.studies)), size, layer)
        for study, cam, score in zip(model.studies, cams, scores):
            rows.append({"scene": k, "study": study, "score": score, "positive_max": float(cam.max(initial=0)),
                         "shown_max": float(G.shown_map(cam, None).max()),
                         "negative_share": float(np.abs(np.minimum(cam, 0)).sum() / max(np.abs(cam).sum(), 1e-12))})
    return pd.DataFrame(rows)


def sanity(model, inputs, study: int) -> tuple[pd.DataFrame, dict]:
    """Per cascade step: each method's similarity to the trained network's map, mean over the scenes; and
    the maps of the first scene at every step (for the figure)."""
    size = model.preprocess.input_size
    rows, first = [], {}
    reference = None
    layer_name = G.target_layer_name(model.net, size)
    for step in range(len(G.CASCADE) + 1):
        net = G.randomised(model.net, step)
        guided, layer = G.guided_copy(net), net.get_submodule(layer_name)
        maps = []
        for x in inputs:
            cam, _ = G.signed_cam(net, x, study, size, layer)
            shown = G.shown_map(cam, size)
            gbp = G.guided_backprop(guided, x, study)
            maps.append({"Grad-CAM": shown, "Guided Backprop": gbp, "Guided Grad-CAM": gbp * shown})
        reference = reference or maps
        name = "trained" if step == 0 else f"+ {G.CASCADE[step - 1][0]}"
        first[name] = maps[0]
        rows.append({"step": name, **{method: float(np.mean([G.rank_similarity(m[method], r[method])
                                                               for m, r in zip(maps, reference)]))
                                      for method in maps[0]}})
    return pd.DataFrame(rows), first


def deletion(model, inputs, study: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean change of the study's score after deleting k cells (k = 0..16), per order; each scene's
    deletion_auc, the mean change over k, per order: its spread over scenes)."""
    size = model.preprocess.input_size
    layer = model.net.get_submodule(G.target_layer_name(model.net, size))
    curves = {}
    for k, x in enumerate(inputs):
        cam, _ = G.signed_cam(model.net, x, study, size, layer)
        for name, order in G.deletion_orders(cam, RANDOM_ORDERS, seed=k).items():
            curve = G.deletion_curve(model.net, x, study, order, cam.shape[0])
            key = "random" if name.startswith("random") else name
            curves.setdefault(key, []).append(curve - curve[0])
    mean = pd.DataFrame({name: np.mean(values, axis=0) for name, values in curves.items()})
    per_scene = pd.DataFrame({name: np.mean(np.reshape(values, (len(inputs), -1, len(mean))), axis=(1, 2))
                              for name, values in curves.items()})
    return mean, per_scene


def plot_maps(model, inputs, study: str, folder) -> Path:
    from matplotlib.figure import Figure

    size, j = model.preprocess.input_size, model.studies.index(study)
    layer = model.net.get_submodule(G.target_layer_name(model.net, size))
    cams = [G.signed_cam(model.net, x, j, size, layer)[0] for x in inputs[:4]]
    common = max(max(c.max(initial=0) for c in cams), 1e-12)
    fig = Figure(figsize=(10, 2.6 * len(cams)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(cams), 4))
    titles = ("the crop the model sees", f"{study}: as shown (own 0..1)", f"{study}: one scale for all",
              f"{study}: negative evidence")
    for row, x, cam in zip(axes, inputs, cams):
        picture = G.picture_of(x)
        panels = (None, G.shown_map(cam, size), G.upsample(np.maximum(cam, 0), size) / common,
                  G.shown_map(-cam, size))
        for ax, title, heat in zip(row, titles, panels):
            ax.imshow(picture)
            if heat is not None:
                ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(f"{title}\npositive max {cam.max(initial=0):.3g}" if heat is not None and title.endswith(
                "scale for all") else title, fontsize=8)
            ax.set_axis_off()
    return W.save_figure(fig, folder, "gradcam_maps")


def plot_sanity(results: pd.DataFrame, first: dict, folder) -> list[Path]:
    from matplotlib.figure import Figure

    steps = list(first)
    methods = list(next(iter(first.values())))
    fig = Figure(figsize=(1.6 * len(steps), 1.8 * len(methods) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(methods), len(steps)))
    for r, method in enumerate(methods):
        for c, step in enumerate(steps):
            ax = axes[r, c]
            heat = first[step][method]
            ax.imshow(heat / max(heat.max(), 1e-12), cmap="gray" if method == "Guided Backprop" else "jet")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(step, fontsize=7)
            if c == 0:
                ax.set_ylabel(method, fontsize=8)
    maps = W.save_figure(fig, folder, "gradcam_sanity_maps")
    fig = Figure(figsize=(7, 3.8), layout="constrained")
    ax = fig.subplots()
    for method in methods:
        ax.plot(range(len(results)), results[method], "o-", label=method)
    ax.set_xticks(range(len(results)), results["step"], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("Spearman with the trained network's map")
    ax.set_title("Cascading randomisation (Adebayo et al. 2018): from the top down", fontsize=10)
    ax.axhline(0, color="grey", lw=0.8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [maps, W.save_figure(fig, folder, "gradcam_sanity")]


def plot_deletion(curves: pd.DataFrame, study: str, folder) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for name in curves.columns:
        ax.plot(curves.index, curves[name], "o-", ms=3, label=name)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("cells deleted (of 16)")
    ax.set_ylabel(f"change of the {study} score (1..10 scale)")
    ax.set_title("Deletion: grey out Grad-CAM's cells in order", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return W.save_figure(fig, folder, "gradcam_deletion")


def main(argv=None) -> None:
    from perceptions.predict.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("city", help="a synthetic city (or any folder of images)")
    parser.add_argument("--scenes", type=int, default=8, help="how many of its images (the first, by name)")
    parser.add_argument("--study", default="safe", choices=STUDY_NAMES, help="the study of checks 4 and 5")
    parser.add_argument("--model", help="model package (default: the shipped model)")
    parser.add_argument("--figures", help="folder to write the figures into")
    args = parser.parse_args(argv)
    # One image at a time: a second thread buys nothing at this size, and on a busy machine threads waiting for
    # each other made these checks ten times slower.
    torch.set_num_threads(1)
    model = load_model(args.model)
    inputs = [G.model_input(model, path) for path in scene_paths(args.city, max(1, args.scenes))]
    j = model.studies.index(args.study)

    size = model.preprocess.input_size
    print("1. resolution: the last feature map (every Grad-CAM map) at each input size")
    for side, (h, w) in G.grid_sizes(model.net).items():
        mark = "  <- the model's size" if side == size else ""
        print(f"  {side:3d} px -> {h} x {w} cells of {side // h} px{mark}")

    table = evidence(model, inputs)
    blank = table["positive_max"] <= 0
    print(f"2. normalisation: {int((table['shown_max'] > 0.999).sum())} of the {len(table)} shown maps have a "
          f"cell at 1.00 whatever the evidence behind them ({int(blank.sum())} blank: no cell raises the score); "
          f"positive_max, the largest cell before rescaling, over {len(inputs)} scenes:")
    for study, group in table[~blank].groupby("study", sort=False):
        values = group["positive_max"]
        print(f"  {study:10s} positive_max median {values.median():.3g}, from {values.min():.3g} to "
              f"{values.max():.3g} ({values.max() / values.min():.0f}-fold)")
    print("3. negative evidence: negative_share, the share of |evidence| in cells that lower the score (the "
          "shown map drops it)")
    print("  " + ", ".join(f"{s} {g['negative_share'].mean():.2f}" for s, g in table.groupby("study", sort=False)))

    results, first = sanity(model, inputs, j)
    print(f"4. sanity ({args.study}): Spearman of each method's map with the trained network's, as the network is "
          "re-initialised from the top down")
    print("  " + f"{'step':14s}" + "".join(f"{m:>18s}" for m in results.columns[1:]))
    for _, row in results.iterrows():
        print("  " + f"{row['step']:14s}" + "".join(f"{row[m]:18.2f}" for m in results.columns[1:]))

    curves, per_scene = deletion(model, inputs, j)
    print(f"5. deletion ({args.study}): mean change of the score after deleting k of the 16 cells; deletion_auc is "
          "the mean change over k = 0..16 (lower: the order found what raises the score)")
    for name in curves.columns:
        print(f"  {name:14s} after 4: {curves[name].iloc[min(4, len(curves) - 1)]:+.3f}, after 8: "
              f"{curves[name].iloc[min(8, len(curves) - 1)]:+.3f}, all 16: {curves[name].iloc[-1]:+.3f}; "
              f"deletion_auc {curves[name].mean():+.3f} (sd over the scenes {per_scene[name].std(ddof=1):.3f})")
    hot = per_scene["hottest first"] - per_scene["random"]
    print(f"  hottest first minus random, scene by scene: deletion_auc {W.spread(hot)}; lower in "
          f"{int((hot < 0).sum())} of {len(hot)} scenes")
    if args.figures:
        for path in [plot_maps(model, inputs, args.study, args.figures), *plot_sanity(results, first, args.figures),
                     plot_deletion(curves, args.study, args.figures)]:
            print(f"figure: {path}")


if __name__ == "__main__":
    W.run_main(main)
