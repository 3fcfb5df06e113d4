"""Two models side by side on the same held-out votes: `perceptions evaluate --model FT --compare-model BASE`.

The use: after `perceptions train --init-model BASE` fine-tuned a model on local votes, did it get better on
local votes it never saw? Both models score the same images (the `--split` of --model's recorded split spec,
so the fine-tuned model's held-out images) and are judged on the same votes: those whose two images both lie in
that split and that both models score. Ties ("equal") are excluded, as everywhere pairwise accuracy is reported
(metrics.pairwise_accuracy); a predicted tie counts half. The difference comes with a 95% interval from a
paired bootstrap over the votes (both models resampled together, so the interval reflects the votes on which
they disagree), per study and pooled over studies.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from perceptions.evaluate.metrics import as_float_array

BOOTSTRAP = 2000


def vote_credits(votes: pd.DataFrame, *score_series: pd.Series) -> list[np.ndarray]:
    """For the decisive votes (left/right) whose two images have finite scores in every series: each series'
    credit per vote (1 right, 0 wrong, 0.5 a predicted tie), in vote order, one array per series."""
    choice = votes["choice"].astype(str).str.strip().str.lower().to_numpy()
    keep = np.isin(choice, ("left", "right"))
    sides = []
    for scores in score_series:
        scores = scores[~scores.index.duplicated(keep="first")]
        left = as_float_array(votes["left"].astype(str).map(scores))
        right = as_float_array(votes["right"].astype(str).map(scores))
        keep &= np.isfinite(left) & np.isfinite(right)
        sides.append((left, right))
    credits = []
    for left, right in sides:
        margin = np.where(choice[keep] == "left", left[keep] - right[keep], right[keep] - left[keep])
        credits.append(np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0)))
    return credits


def _paired(model: np.ndarray, other: np.ndarray, rng) -> dict:
    n = int(model.size)
    if n < 2:
        return {"votes": n, "model": float("nan"), "compare": float("nan"), "difference": float("nan"),
                "difference_ci95": [float("nan"), float("nan")]}
    draws = rng.integers(n, size=(BOOTSTRAP, n))
    boot = (model[draws] - other[draws]).mean(axis=1)
    return {"votes": n, "model": float(model.mean()), "compare": float(other.mean()),
            "difference": float(model.mean() - other.mean()),
            "difference_ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]}


def compare_pairwise(model_pred: pd.DataFrame, compare_pred: pd.DataFrame, votes: pd.DataFrame, studies,
                     seed: int = 0) -> dict:
    """{study: {votes, model, compare, difference, difference_ci95}} plus "all" (every study's votes pooled).
    model_pred / compare_pred: location_id and `<study>_score` per image (a study missing from compare_pred is
    skipped)."""
    rng = np.random.default_rng(seed)
    out, pooled = {}, ([], [])
    for study in studies:
        column = f"{study}_score"
        if column not in compare_pred.columns:
            continue
        study_votes = votes[votes["study"] == study] if "study" in votes.columns else votes
        a, b = vote_credits(study_votes, *(pd.Series(as_float_array(p[column]), index=p["location_id"].astype(str))
                                           for p in (model_pred, compare_pred)))
        out[study] = _paired(a, b, rng)
        pooled[0].append(a)
        pooled[1].append(b)
    if out:
        out["all"] = _paired(np.concatenate(pooled[0]), np.concatenate(pooled[1]), rng)
    return out


def format_comparison(table: dict, model_name: str, compare_name: str) -> str:
    """A plain-text table: study, votes, each model's pairwise accuracy, the difference and its interval."""
    head = (f"{'study':<11} {'votes':>6}  {compare_name[:14]:>14}  {model_name[:14]:>14}  {'difference':>10}  "
            "95% interval")
    lines = [head]
    for study, r in table.items():
        lo, hi = r["difference_ci95"]
        lines.append(f"{study:<11} {r['votes']:>6}  {r['compare']:>14.3f}  {r['model']:>14.3f}  "
                     f"{r['difference']:>+10.3f}  [{lo:+.3f}, {hi:+.3f}]")
    return "\n".join(lines)
