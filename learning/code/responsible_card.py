"""A model card's missing half: the shipped model evaluated group by group on a synthetic city it never saw.

Model cards (Mitchell et al. 2019) report a model's performance disaggregated by the groups it will meet, not
one average. model/MODEL_CARD.md gives one test table on images like the training ones. This script scores a
new synthetic city (a new --seed, and with --cities 8 four city profiles the model never saw) with the model,
compares the scores with the truth group by group (by light, by city, seen or unseen), and writes a Markdown
section for the card:
  spearman_truth   the group's mean Spearman (over the six studies) of the model's scores with the truth
  bias_sd          the group's mean of (model score - truth), both standardised over the whole city, per
                   study: how much higher (+) or lower (-) the model scores that group than its truth warrants

    python learning/code/responsible_card.py CITY --out CARD.md [--model PKG] [--figures DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import wrong_features as W
from perceptions.studies import STUDY_NAMES

# The cities of `perceptions synth`'s default four profiles, the shipped model's training data (model/MODEL_CARD.md).
TRAINED_ON = ("Alderbrook", "Brickport", "Midhaven", "Fogmere")


def scored(model, city) -> pd.DataFrame:
    """The city table with the model's `<study>_score` columns."""
    table = W.city_table(city)
    predicted = model.predict(list(table["path"]))
    return pd.concat([table, predicted[[f"{s}_score" for s in STUDY_NAMES]]], axis=1)


def by_group(table: pd.DataFrame, column: str, min_images: int = 5) -> pd.DataFrame:
    """One row per value of `column` with at least `min_images` images: n, spearman_truth, bias_sd per study."""
    from perceptions.evaluate.metrics import spearman

    z = lambda values: (values - values.mean()) / values.std(ddof=1)  # noqa: E731
    gap = pd.DataFrame({s: z(table[f"{s}_score"]) - z(table[f"true_{s}"]) for s in STUDY_NAMES})
    rows = []
    for value, group in table.groupby(column, sort=True):
        if len(group) < min_images:
            continue
        rho = [spearman(group[f"{s}_score"], group[f"true_{s}"]) for s in STUDY_NAMES]
        rows.append({column: value, "images": len(group), "spearman_truth": float(np.nanmean(rho)),
                     **{f"bias_sd_{s}": float(gap.loc[group.index, s].mean()) for s in STUDY_NAMES}})
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    if frame.empty:
        return "(too few images per group)\n"

    def cell(column, value):
        if not isinstance(value, float) or np.isnan(value):
            return str(value)
        return f"{value:.2f}" if column == "spearman_truth" else f"{value:+.2f}"   # biases carry their sign
    return header + "".join("| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row)) + " |\n"
                            for row in frame.itertuples(False))


def failure_modes(tables: dict) -> list[str]:
    """The weakest group of each grouping and the largest bias, as lines of the card."""
    lines = []
    for name, frame in tables.items():
        if len(frame) < 2:
            continue
        worst = frame.loc[frame["spearman_truth"].idxmin()]
        best = frame.loc[frame["spearman_truth"].idxmax()]
        lines.append(f"- By {name}: weakest {worst[name]} (spearman_truth {worst['spearman_truth']:.2f} on "
                     f"{worst['images']} images), strongest {best[name]} ({best['spearman_truth']:.2f}).")
    frame = tables["city"]
    bias = frame.melt(id_vars=["city"], value_vars=[c for c in frame.columns if c.startswith("bias_sd_")])
    if len(bias):
        top = bias.loc[bias["value"].abs().idxmax()]
        lines.append(f"- Largest bias: {top['variable'].removeprefix('bias_sd_')} in {top['city']}, "
                     f"{top['value']:+.2f} sd (model minus truth).")
    return lines or ["- Too few images per group to say: use a larger city."]


def card(model, table: pd.DataFrame, city, trained_on=TRAINED_ON) -> tuple[str, dict]:
    """The card section (Markdown) and its tables."""
    from perceptions.predict.model import DEFAULT_MODEL_DIR

    table = table.assign(seen=np.where(table["city"].isin(trained_on), "seen profile", "unseen profile"))
    tables = {"light": by_group(table, "light"), "city": by_group(table, "city"), "seen": by_group(table, "seen")}
    meta = model.meta
    data = meta.get("data", {})
    shipped = model.path is not None and Path(model.path).resolve() == Path(DEFAULT_MODEL_DIR).resolve()
    crowd = ("Simulated volunteers of `perceptions synth`'s default crowd: each study's formula in "
             "perceptions/data/synthetic.py, 6 votes per image and study, crowd noise sd 0.6, 4% careless voters. "
             "No real person's perception is in this model." if shipped else
             f"The voters of {data.get('path', '?')}: say who they were (their city.json, for a synthetic city).")
    text = [f"# Model card addendum: {meta.get('backbone', '?')}, evaluated on {city}", "",
            "## Model", f"- Backbone {meta.get('backbone')}, input {meta['preprocess']['input_size']} px; studies "
            f"{', '.join(model.studies)}; trained on {data.get('n_images', '?')} images of "
            f"{data.get('path', '?')} (split counts {data.get('counts', '?')}).",
            "", "## Which crowd", f"- {crowd}",
            "", "## Evaluation, disaggregated", f"{len(table)} images of {city}, never trained on; Spearman with "
            "the truth (mean over the studies) and bias in standard deviations (model minus truth).", "",
            "### By light", markdown_table(tables["light"]), "### By city", markdown_table(tables["city"]),
            "### Seen and unseen city profiles", markdown_table(tables["seen"]),
            "## Known failure modes (measured above)", *failure_modes(tables),
            "- Not measured here: shortcuts (chapter 7 of learning/: brightness read as night) and real photographs.",
            "", "## Intended use", "- Teaching and testing the pipeline. Not for decisions about real places or "
            "people: its scores are a simulated crowd's impressions of drawings."]
    return "\n".join(text) + "\n", tables


def main(argv=None) -> None:
    from perceptions.predict.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("city", help="a synthetic city the model has not seen (e.g. synth --seed 7 --cities 8)")
    parser.add_argument("--out", required=True, help="the Markdown file to write")
    parser.add_argument("--model", help="model package (default: the shipped model)")
    parser.add_argument("--trained-on", default=",".join(TRAINED_ON),
                        help="the cities of the model's training data (default: synth's default four)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise W.PerceptionsError(f"{out} already exists (pass --overwrite to replace it)")
    model = load_model(args.model)
    text, tables = card(model, scored(model, args.city), args.city, args.trained_on.split(","))
    for name, frame in tables.items():
        shown = frame[[c for c in frame.columns if not c.startswith("bias_sd_") or c in
                       ("bias_sd_safe", "bias_sd_lively", "bias_sd_depressing")]]
        print(shown.to_string(index=False, formatters={c: (lambda v: f"{v:.2f}") if c == "spearman_truth" else
                                                       (lambda v: f"{v:+.2f}") for c in shown.columns[2:]}))
        print()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    W.run_main(main)
