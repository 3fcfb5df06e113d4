"""Counterfactuals only the synthetic city allows: redraw a scene with one attribute changed, predict again.

A scene of `perceptions synth` is drawn from its attributes (truth.csv's columns) and its own random stream
(seed, 3, row): perceptions/data/synthetic_scene.py: draw_scene. Redrawn with the same stream and one attribute
set low, then high, it is the same place with less or more of one thing. (Not the same pixels everywhere: the
number of trees, stains or tags drawn changes how much of the random stream is used, so later objects move;
that is why the effects are averaged over many scenes.) The shipped model scores both versions, and the
generator's own formulas give the true change (perceptions/data/synthetic.py: true_perceptions), so the
model's effect can be set against the cause. Both are in standard deviations: of the model's scores on the
original scenes, and of the truth over the city.

Two versions of light: `day -> night` redraws the scene at night (lamps, lit windows, a dark sky);
`darkened` takes the day version and only dims its pixels to the night version's brightness. The truth of a
darkened picture does not change (it is still the day scene), so any effect the model shows there is a
shortcut: brightness standing in for night.

    python learning/code/wrong_counterfactual.py CITY [--scenes 30] [--model PKG] [--figures DIR]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import wrong_features as W
from perceptions.studies import STUDY_NAMES

# (attribute, low, high): each edit sets one attribute low, then high, and leaves every other one as it is.
EDITS = (("green", 0.1, 0.9), ("decay", 0.1, 0.9), ("graffiti", 0.05, 0.9), ("litter", 0.05, 0.9),
         ("people", 0.1, 0.9), ("shops", 0.1, 0.9), ("light", "day", "night"))
DARKENED = "darkened"


def city_seed(city, seed: int | None) -> int:
    """The --seed the city was drawn with: given, else city.json's (where synth writes it), else 0."""
    if seed is not None:
        return int(seed)
    made = Path(city) / "city.json"
    if made.is_file():
        recorded = json.loads(made.read_text(encoding="utf-8"))
        recorded = recorded.get("arguments", recorded)
        if "seed" in recorded:
            return int(recorded["seed"])
    return 0


def places(city) -> pd.DataFrame:
    """truth.csv in the order the scenes were drawn (row i used the random stream (seed, 3, i))."""
    from perceptions.data.folder import read_truth

    return read_truth(Path(city) / "truth.csv")


def draw(row: pd.Series, index: int, seed: int, **changes):
    """The scene of truth.csv's row `index`, with `changes` (attribute=value) applied, as a PIL image."""
    from perceptions.data.synthetic import ATTRIBUTES
    from perceptions.data.synthetic_scene import draw_scene

    attributes = {a: float(row[a]) for a in ATTRIBUTES}
    attributes["light"] = str(row["light"])
    attributes.update(changes)
    return draw_scene(attributes, np.random.default_rng([seed, 3, index]))


def darken_to(picture, reference):
    """`picture` with its pixels scaled so that its mean brightness is that of `reference`."""
    from PIL import Image

    pixels = np.asarray(picture, dtype=np.float32)
    factor = np.asarray(reference, dtype=np.float32).mean() / max(pixels.mean(), 1e-3)
    return Image.fromarray(np.clip(pixels * factor, 0, 255).astype(np.uint8))


def check_redraw(city, table: pd.DataFrame, seed: int) -> float:
    """Mean absolute pixel difference between scene 0 redrawn and its JPEG: a few levels (JPEG) when the seed
    is right; raises when it is not."""
    from perceptions.data.images import open_rgb
    from perceptions.data.synthetic import image_name

    path = Path(city) / "images" / image_name(table.iloc[0])
    difference = float(np.abs(np.asarray(draw(table.iloc[0], 0, seed), dtype=float)
                              - np.asarray(open_rgb(path), dtype=float)).mean())
    if difference > 8:
        raise W.PerceptionsError(f"{city}: redrawing scene 0 with seed {seed} does not give its image (mean "
                                 f"difference {difference:.0f} levels); pass the city's --seed")
    return difference


def true_change(rows: pd.DataFrame, attribute: str, low, high, seed: int) -> np.ndarray:
    """(scenes, studies) change of the truth from low to high (the place's own noise cancels)."""
    from perceptions.data.synthetic import true_perceptions

    lo, hi = rows.copy(), rows.copy()
    lo[attribute], hi[attribute] = low, high
    lo, hi = lo.reset_index(drop=True), hi.reset_index(drop=True)
    return (true_perceptions(hi, seed) - true_perceptions(lo, seed))[list(STUDY_NAMES)].to_numpy(float)


def effects(model, city, scenes: int, seed: int | None = None):
    """(effects table, example pictures of the first scene): per edit and study, the mean model change and
    the mean true change, in standard deviations."""
    table = places(city)
    seed = city_seed(city, seed)
    check_redraw(city, table, seed)
    rows = table.iloc[:scenes]
    score = [f"{s}_score" for s in STUDY_NAMES]
    originals = [draw(row, i, seed) for i, row in rows.iterrows()]
    model_sd = model.predict(originals)[score].to_numpy(float).std(0, ddof=1) if scenes > 1 else np.ones(6)
    truth_sd = table[list(STUDY_NAMES)].to_numpy(float).std(0, ddof=1)
    out, examples = [], {}
    # The pictures shown are of the first day scene (if any): the edits are easier to see by day.
    shown = next((k for k, light in enumerate(rows["light"]) if light == "day"), 0)
    for attribute, low, high in EDITS:
        lows = [draw(row, i, seed, **{attribute: low}) for i, row in rows.iterrows()]
        highs = [draw(row, i, seed, **{attribute: high}) for i, row in rows.iterrows()]
        versions = [(f"{attribute} {low} -> {high}", highs, true_change(rows, attribute, low, high, seed))]
        if attribute == "light":
            dimmed = [darken_to(day, night) for day, night in zip(lows, highs)]
            versions.append((DARKENED, dimmed, np.zeros((len(rows), len(STUDY_NAMES)))))
            examples[DARKENED] = dimmed[shown]
        base = model.predict(lows)[score].to_numpy(float)
        examples[f"{attribute}={low}"], examples[f"{attribute}={high}"] = lows[shown], highs[shown]
        for name, pictures, truth in versions:
            change = model.predict(pictures)[score].to_numpy(float) - base
            for j, study in enumerate(STUDY_NAMES):
                out.append({"edit": name, "study": study, "model_effect": change[:, j].mean() / model_sd[j],
                            "true_effect": truth[:, j].mean() / truth_sd[j]})
    return pd.DataFrame(out), examples


def plot(results: pd.DataFrame, examples: dict, model, folder) -> list[Path]:
    from matplotlib.figure import Figure

    shown = ["light=day", "light=night", DARKENED, "green=0.1", "green=0.9", "graffiti=0.05", "graffiti=0.9"]
    fig = Figure(figsize=(14, 2.3), layout="constrained")
    scores = model.predict([examples[k] for k in shown])
    for ax, key, (_, row) in zip(fig.subplots(1, len(shown)), shown, scores.iterrows()):
        ax.imshow(np.asarray(examples[key]))
        ax.set_title(f"{key}\nsafe {row['safe_score']:.2f}, beautiful {row['beautiful_score']:.2f}", fontsize=8)
        ax.set_axis_off()
    first = W.save_figure(fig, folder, "counterfactual_scenes")
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    for k, (edit, group) in enumerate(results.groupby("edit", sort=False)):
        ax.scatter(group["true_effect"], group["model_effect"], s=22, color=f"C{k % 10}", label=edit,
                   marker="x" if edit == DARKENED else "o")
    low = min(results["true_effect"].min(), results["model_effect"].min()) - 0.1
    high = max(results["true_effect"].max(), results["model_effect"].max()) + 0.1
    ax.plot([low, high], [low, high], color="grey", lw=0.8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("true effect (sd of the truth)")
    ax.set_ylabel("model's effect (sd of its scores)")
    ax.set_title("One attribute changed, every study: model against cause", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return [first, W.save_figure(fig, folder, "counterfactual_effects")]


def main(argv=None) -> None:
    from perceptions.predict.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("city", help="a synthetic city folder (perceptions synth --out ...)")
    parser.add_argument("--scenes", type=int, default=30, help="how many of its scenes to redraw")
    parser.add_argument("--seed", type=int, help="the city's --seed (default: city.json's, else 0)")
    parser.add_argument("--model", help="model package (default: the shipped model)")
    parser.add_argument("--figures", help="folder to write the figures into")
    args = parser.parse_args(argv)
    if args.scenes < 1:
        raise W.PerceptionsError("--scenes must be at least 1")
    model = load_model(args.model)
    results, examples = effects(model, args.city, args.scenes, args.seed)
    print(f"mean effect of each edit over {args.scenes} scenes, model / truth, in standard deviations:")
    print(f"{'edit':22s}" + "".join(f"{s:>15s}" for s in STUDY_NAMES))
    for edit, group in results.groupby("edit", sort=False):
        cells = [f"{m:+.2f} / {t:+.2f}" for m, t in zip(group["model_effect"], group["true_effect"])]
        print(f"{edit:22s}" + "".join(f"{c:>15s}" for c in cells))
    real = results[results["edit"] != DARKENED]
    agree = float((np.sign(real["model_effect"]) == np.sign(real["true_effect"]))[real["true_effect"].abs()
                                                                               > 0.1].mean())
    print(f"model_effect against true_effect over the {len(real)} real edits: Pearson "
          f"{np.corrcoef(real['model_effect'], real['true_effect'])[0, 1]:.2f}; same sign in {agree:.0%} of those "
          f"whose true effect exceeds 0.1 sd")
    if args.figures:
        for path in plot(results, examples, model, args.figures):
            print(f"figure: {path}")


if __name__ == "__main__":
    W.run_main(main)
