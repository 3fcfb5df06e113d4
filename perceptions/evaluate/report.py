"""Per-study metrics of a table of predictions against labels (and votes and truth, where they exist).

`evaluate_predictions` is what the train loop calls at the end of every run and what `perceptions evaluate`
prints; `format_table` renders it for a terminal; `write_plots` draws predicted vs true and the decile
confusion matrices. `scaling` is any object with `.scale(raw, study) -> 1..10` and `.decile(scaled, study) ->
1..10` (perceptions.data.labels.Scaling, restored from the model package): the label scale and the label
decile edges. `prediction_deciles` (optional, any object with `.decile(score, study)`, e.g.
perceptions.predict.inference.PredictionDeciles) puts predictions in deciles with edges fitted on the model's
own training predictions, so predicted deciles mean what label deciles mean; without it predictions are put in
deciles with the label edges (the old definition, whose deciles 1 and 10 shrunk predictions rarely reach).
Both definitions' +-1 decile accuracy is reported: `acc_within_1_decile` (prediction_deciles when given) and
`acc_within_1_decile_label_edges`, beside what a constant and random ranks score (evaluate/baselines.py).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from perceptions.errors import PerceptionsError
from perceptions.evaluate import baselines as B
from perceptions.evaluate import metrics as M

MEAN_KEY = "mean"
# Counts are summed in the mean row; every other metric is averaged over studies.
COUNT_METRICS = ("n", "pairwise_n")


def align_study(joined: pd.DataFrame, study: str, scaling, prediction_deciles=None) -> dict[str, np.ndarray]:
    """For one study, the rows with both a finite prediction and a finite label: prediction and label on the
    1..10 scale and as deciles, the raw label, and the location ids. pred_decile: by `prediction_deciles`'
    edges when given, else by the label edges; pred_decile_label_edges: always by the label edges."""
    score = M.as_float_array(joined[f"{study}_score"])
    raw = M.as_float_array(joined[study]) if study in joined.columns else np.full(len(joined), np.nan)
    ok = np.isfinite(score) & np.isfinite(raw)
    score, raw = score[ok], raw[ok]
    if ok.any():
        true_scaled = M.as_float_array(scaling.scale(raw, study))
        true_decile = M.as_float_array(scaling.decile(true_scaled, study))
        label_edges = M.as_float_array(scaling.decile(score, study))
        pred_decile = (label_edges if prediction_deciles is None
                       else M.as_float_array(prediction_deciles.decile(score, study)))
    else:
        true_scaled = true_decile = pred_decile = label_edges = np.empty(0)
    return {"location_id": joined["location_id"].to_numpy()[ok], "pred": score, "true": true_scaled,
            "pred_decile": pred_decile, "pred_decile_label_edges": label_edges, "true_decile": true_decile,
            "raw": raw, "mask": ok}


def join_tables(pred: pd.DataFrame, labels: pd.DataFrame, studies, truth: pd.DataFrame | None = None
                ) -> pd.DataFrame:
    """One row per predicted image: its `<study>_score`s, raw `<study>` labels and `<study>_truth` values."""
    missing = [f"{s}_score" for s in studies if f"{s}_score" not in pred.columns]
    if missing:
        raise PerceptionsError(f"the predictions have no column {', '.join(missing)}; "
                               "evaluate only the studies the model predicts")
    if "location_id" not in pred.columns or "location_id" not in labels.columns:
        raise PerceptionsError("predictions and labels both need a location_id column")
    left = pred[["location_id"] + [f"{s}_score" for s in studies]].copy()
    left["location_id"] = left["location_id"].astype(str)
    left = left.drop_duplicates("location_id")
    label_cols = [s for s in studies if s in labels.columns]
    right = labels[["location_id"] + label_cols].copy()
    right["location_id"] = right["location_id"].astype(str)
    joined = left.merge(right.drop_duplicates("location_id"), on="location_id", how="left")
    if truth is not None:
        truth_cols = [s for s in studies if s in truth.columns]
        t = truth[["location_id"] + truth_cols].copy()
        t["location_id"] = t["location_id"].astype(str)
        t = t.drop_duplicates("location_id").rename(columns={s: f"{s}_truth" for s in truth_cols})
        joined = joined.merge(t, on="location_id", how="left")
    return joined


def evaluate_predictions(pred: pd.DataFrame, labels: pd.DataFrame, studies, scaling,
                         votes: pd.DataFrame | None = None, truth: pd.DataFrame | None = None,
                         score_fn: Callable[[pd.DataFrame], pd.Series] | None = None,
                         ceiling_splits: int = 5, seed: int = 0, prediction_deciles=None
                         ) -> dict[str, dict[str, float]]:
    """{study: {metric: value}} plus a "mean" entry over studies.

    pred: location_id and `<study>_score` (1..10). labels: location_id and raw `<study>` scores (TrueSkill
    scale). votes (optional): study, left, right, choice; gives pairwise accuracy on the votes between predicted
    images and the label-noise ceiling (split-half reliability of the labels, scored by `score_fn`, default a
    win rate). truth (optional, the synthetic city): location_id and one column per study.
    prediction_deciles (optional): the edges predicted deciles are cut with (the model package's, fitted on its
    training predictions); None: the label edges of `scaling`, and then acc_within_1_decile equals
    acc_within_1_decile_label_edges.
    """
    studies = list(studies)
    joined = join_tables(pred, labels, studies, truth)
    results: dict[str, dict[str, float]] = {}
    for study in studies:
        a = align_study(joined, study, scaling, prediction_deciles)
        m = {
            "n": int(a["pred"].size),
            "acc_within_1_decile": M.decile_accuracy(a["pred_decile"], a["true_decile"], tolerance=1),
            "acc_exact_decile": M.decile_accuracy(a["pred_decile"], a["true_decile"], tolerance=0),
            "acc_within_1_decile_label_edges": M.decile_accuracy(a["pred_decile_label_edges"], a["true_decile"],
                                                                 tolerance=1),
            **B.baseline_metrics(a["true_decile"], constant_decile(scaling, study)),
            **B.extreme_decile_shares(a["pred_decile"]),
            "spearman": M.spearman(a["pred"], a["true"]),
            "pearson": M.pearson(a["pred"], a["true"]),
            "r2": M.r2(a["pred"], a["true"]),
            "mae": M.mae(a["pred"], a["true"]),
        }
        if votes is not None:
            study_votes = votes[votes["study"] == study] if "study" in votes.columns else votes
            scores = pd.Series(M.as_float_array(joined[f"{study}_score"]), index=joined["location_id"])
            m["pairwise_acc"], m["pairwise_n"] = M.pairwise_accuracy(scores, study_votes)
            ceiling = M.label_noise_ceiling(votes=study_votes, score_fn=score_fn, seed=seed,
                                            n_splits=ceiling_splits, ids=a["location_id"])
            m.update(ceiling)
        truth_col = f"{study}_truth"
        if truth is not None and truth_col in joined.columns:
            t = M.as_float_array(joined[truth_col])[a["mask"]]
            m["spearman_truth"] = M.spearman(a["pred"], t)
            m["pearson_truth"] = M.pearson(a["pred"], t)
            m["label_spearman_truth"] = M.spearman(a["raw"], t)
            m["label_pearson_truth"] = M.pearson(a["raw"], t)
            m["ceiling_within_1_decile"] = perfect_model_decile_accuracy(t, a, study, scaling)
        results[study] = m
    results[MEAN_KEY] = mean_over_studies(results)
    return results


def constant_decile(scaling, study: str) -> int:
    """The decile a constant prediction at the training median label falls in (baselines.constant_decile):
    from the label edges when `scaling` exposes them (Scaling.params), else decile 6, where it lands whenever
    no edge ties with the median."""
    edges = ((getattr(scaling, "params", None) or {}).get(study) or {}).get("decile_edges")
    return B.constant_decile(edges) if edges is not None else B.MEDIAN_DECILE


def perfect_model_decile_accuracy(truth: np.ndarray, aligned: dict, study: str, scaling) -> float:
    """+-1 decile accuracy of a model that ranks the images exactly as the truth does and is perfectly
    calibrated to the labels' distribution: what label noise alone leaves of the decile metric."""
    perfect = M.quantile_match(truth, aligned["true"])
    ok = np.isfinite(perfect)
    if ok.sum() < M.MIN_PAIRS:
        return float("nan")
    predicted = M.as_float_array(scaling.decile(perfect[ok], study))
    return M.decile_accuracy(predicted, aligned["true_decile"][ok], tolerance=1)


def mean_over_studies(per_study: dict[str, dict[str, float]]) -> dict[str, float]:
    """Average of each metric over studies (NaN ignored); counts are summed."""
    names = [k for k in per_study if k != MEAN_KEY]
    keys = list(dict.fromkeys(key for s in names for key in per_study[s]))
    out: dict[str, float] = {}
    for key in keys:
        values = np.array([per_study[s].get(key, np.nan) for s in names], dtype=float)
        if key in COUNT_METRICS:
            out[key] = int(np.nansum(values))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> NaN, on purpose
                out[key] = float(np.nanmean(values)) if values.size else float("nan")
    return out


# (metric key, column header, format) in the order the terminal table shows them.
TABLE_COLUMNS = (
    ("n", "n", "{:d}"),
    ("acc_within_1_decile", "+-1 dec", "{:.3f}"),
    ("acc_exact_decile", "exact", "{:.3f}"),
    ("baseline_constant_within_1_decile", "const+-1", "{:.3f}"),
    ("baseline_random_within_1_decile", "rand+-1", "{:.3f}"),
    ("spearman", "spearman", "{:.3f}"),
    ("r2", "r2", "{:.3f}"),
    ("mae", "mae", "{:.2f}"),
    ("pairwise_acc", "pairwise", "{:.3f}"),
    ("label_ceiling", "ceiling", "{:.3f}"),
    ("ceiling_within_1_decile", "ceil+-1", "{:.3f}"),
    ("spearman_truth", "sp~truth", "{:.3f}"),
    ("label_spearman_truth", "label~truth", "{:.3f}"),
)


# One line each for the columns whose header does not explain itself.
TABLE_LEGEND = {
    "acc_within_1_decile": "+-1 dec / exact: predicted decile (edges from the model's own training predictions "
                           "when it has them) within one of / equal to the label's",
    "baseline_constant_within_1_decile": "const+-1 / rand+-1: +-1 dec of a constant at the training median / of "
                                         "random ranks (exact, from the label deciles)",
    "pairwise_acc": "pairwise: held-out votes (both images evaluated, ties excluded) the scores get right",
    "label_ceiling": "ceiling: Spearman a perfect model would reach against these noisy labels (split-half)",
    "ceiling_within_1_decile": "ceil+-1: +-1 dec of a perfect model (truth's ranking, calibrated to the labels)",
    "spearman_truth": "sp~truth / label~truth: Spearman of the prediction / of the crowd label with the truth",
}


def format_table(metrics: dict[str, dict[str, float]], legend: bool = False) -> str:
    """A compact text table: one row per study (then the mean), the key metrics that are present as columns;
    `legend` adds a line explaining each less obvious column."""
    rows = list(metrics)
    cols = [c for c in TABLE_COLUMNS if any(c[0] in metrics[r] for r in rows)]
    first = max([len("study")] + [len(r) for r in rows])

    def cell(value, fmt):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        return fmt.format(int(value) if fmt == "{:d}" else float(value))

    body = [[cell(metrics[r].get(key), fmt) for key, _, fmt in cols] for r in rows]
    widths = [max(len(head), *(len(b[i]) for b in body)) for i, (_, head, _) in enumerate(cols)]
    lines = ["  ".join(["study".ljust(first)] + [head.rjust(w) for (_, head, _), w in zip(cols, widths)])]
    for r, b in zip(rows, body):
        lines.append("  ".join([r.ljust(first)] + [v.rjust(w) for v, w in zip(b, widths)]))
    if legend:
        lines += [""] + [TABLE_LEGEND[key] for key, _, _ in cols if key in TABLE_LEGEND]
    return "\n".join(lines)


def write_plots(pred: pd.DataFrame, labels: pd.DataFrame, studies, scaling, out_dir, prediction_deciles=None
                ) -> list[Path]:
    """pred_vs_true.png (scatter grid, one panel per study) and decile_confusion.png (row-normalised matrix
    grid; predicted deciles by `prediction_deciles` when given, else the label edges) in out_dir; returns the
    paths written. Uses matplotlib's Agg canvas directly: no pyplot state."""
    from matplotlib.figure import Figure

    studies = list(studies)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    joined = join_tables(pred, labels, studies)
    aligned = {s: align_study(joined, s, scaling, prediction_deciles) for s in studies}
    ncols = min(3, len(studies)) or 1
    nrows = max(1, math.ceil(len(studies) / ncols))

    scatter = Figure(figsize=(4 * ncols, 4 * nrows), layout="constrained")
    for i, s in enumerate(studies):
        ax = scatter.add_subplot(nrows, ncols, i + 1)
        a = aligned[s]
        ax.scatter(a["true"], a["pred"], s=8, alpha=0.5, edgecolors="none")
        ax.plot([1, 10], [1, 10], color="grey", lw=1, ls="--")
        ax.set(xlim=(0.5, 10.5), ylim=(0.5, 10.5), xlabel="label (1..10)", ylabel="prediction (1..10)",
               title=f"{s}: spearman {M.spearman(a['pred'], a['true']):.2f}, n={a['pred'].size}")
    scatter_path = out / "pred_vs_true.png"
    scatter.savefig(scatter_path, dpi=100)

    confusion = Figure(figsize=(4 * ncols, 3.8 * nrows), layout="constrained")
    ticks = np.arange(M.N_DECILES)
    for i, s in enumerate(studies):
        ax = confusion.add_subplot(nrows, ncols, i + 1)
        counts = M.decile_confusion(aligned[s]["pred_decile"], aligned[s]["true_decile"])
        row_sums = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1, origin="upper")
        for (r, c), k in np.ndenumerate(counts):
            if k:
                ax.text(c, r, str(k), ha="center", va="center", fontsize=6,
                        color="white" if share[r, c] > 0.5 else "black")
        ax.set(xticks=ticks, yticks=ticks, xticklabels=ticks + 1, yticklabels=ticks + 1,
               xlabel="predicted decile", ylabel="true decile", title=f"{s}: decile confusion")
    confusion_path = out / "decile_confusion.png"
    confusion.savefig(confusion_path, dpi=100)
    return [scatter_path, confusion_path]
