"""Evaluation metrics: pure functions on arrays (and on vote tables), no torch, no files.

Conventions shared by every function here:
- Arguments come in the order (prediction, truth), as `decile_accuracy(pred, true)`.
- A pair where either side is NaN (or None / pd.NA) is dropped, the same way everywhere, before anything is
  computed; with fewer than 2 valid pairs the result is NaN, never an exception.
- Ranks use the average rank for ties (the usual Spearman definition).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import rankdata

MIN_PAIRS = 2
N_DECILES = 10


def as_float_array(values) -> np.ndarray:
    """1-D float array with NaN for missing values (accepts lists, arrays, Series with pd.NA)."""
    if isinstance(values, (pd.Series, pd.Index)):
        return values.to_numpy(dtype=float, na_value=np.nan).ravel()
    try:
        return np.asarray(values, dtype=float).ravel()  # None already becomes NaN here
    except TypeError:  # pd.NA or other missing markers inside a list / object array
        return pd.Series(np.asarray(values, dtype=object).ravel()).astype("Float64").to_numpy(
            dtype=float, na_value=np.nan)


def valid_pairs(pred, true) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both prediction and truth are finite numbers."""
    p, t = as_float_array(pred), as_float_array(true)
    if p.shape != t.shape:
        raise ValueError(f"prediction and truth differ in length: {p.shape[0]} vs {t.shape[0]}")
    keep = np.isfinite(p) & np.isfinite(t)
    return p[keep], t[keep]


def decile_accuracy(pred_deciles, true_deciles, tolerance: int = 0) -> float:
    """Share of images whose predicted decile is within `tolerance` of the true one (0: exact, 1: +-1 decile)."""
    p, t = valid_pairs(pred_deciles, true_deciles)
    if p.size < MIN_PAIRS:
        return float("nan")
    return float(np.mean(np.abs(p - t) <= tolerance))


def pearson(pred, true) -> float:
    """Pearson correlation; NaN when either side is constant."""
    p, t = valid_pairs(pred, true)
    return _pearson_clean(p, t)


def spearman(pred, true) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    p, t = valid_pairs(pred, true)
    if p.size < MIN_PAIRS:
        return float("nan")
    return _pearson_clean(rankdata(p), rankdata(t))


def _pearson_clean(p: np.ndarray, t: np.ndarray) -> float:
    if p.size < MIN_PAIRS:
        return float("nan")
    dp, dt = p - p.mean(), t - t.mean()
    denom = np.sqrt(np.sum(dp * dp) * np.sum(dt * dt))
    if denom == 0:
        return float("nan")
    return float(np.clip(np.sum(dp * dt) / denom, -1.0, 1.0))


def r2(pred, true) -> float:
    """Coefficient of determination of `pred` as a predictor of `true` (can be negative); NaN if true is constant."""
    p, t = valid_pairs(pred, true)
    if p.size < MIN_PAIRS:
        return float("nan")
    total = np.sum((t - t.mean()) ** 2)
    if total == 0:
        return float("nan")
    return float(1.0 - np.sum((t - p) ** 2) / total)


def mae(pred, true) -> float:
    """Mean absolute error."""
    p, t = valid_pairs(pred, true)
    if p.size < MIN_PAIRS:
        return float("nan")
    return float(np.mean(np.abs(p - t)))


def decile_confusion(pred_deciles, true_deciles) -> np.ndarray:
    """10x10 counts: row = true decile - 1, column = predicted decile - 1. Pairs outside 1..10 are ignored."""
    p, t = valid_pairs(pred_deciles, true_deciles)
    p, t = np.rint(p).astype(int), np.rint(t).astype(int)
    inside = (p >= 1) & (p <= N_DECILES) & (t >= 1) & (t <= N_DECILES)
    counts = np.zeros((N_DECILES, N_DECILES), dtype=np.int64)
    np.add.at(counts, (t[inside] - 1, p[inside] - 1), 1)
    return counts


class PairwiseResult(NamedTuple):
    accuracy: float
    n: int


def pairwise_accuracy(scores_by_id, votes: pd.DataFrame, study: str | None = None) -> PairwiseResult:
    """Share of decisive votes (choice left/right; "equal" excluded) whose winner the scores rank higher.

    scores_by_id: {location_id: score} or a Series indexed by location_id (higher = more of the study's
    quality). votes: columns left, right, choice (+ study, used when `study` is given). Votes whose images
    lack a finite score are skipped. A predicted tie (equal scores) counts as half right. Returns (accuracy, n)
    with n the votes counted; accuracy is NaN when n < 2.
    """
    scores = scores_by_id if isinstance(scores_by_id, pd.Series) else pd.Series(scores_by_id, dtype=float)
    scores = pd.Series(as_float_array(scores), index=scores.index.astype(str))
    scores = scores[~scores.index.duplicated(keep="first")]
    if study is not None and "study" in votes.columns:
        votes = votes[votes["study"] == study]
    choice = votes["choice"].astype(str).str.strip().str.lower().to_numpy()
    left = as_float_array(votes["left"].astype(str).map(scores))
    right = as_float_array(votes["right"].astype(str).map(scores))
    keep = np.isin(choice, ("left", "right")) & np.isfinite(left) & np.isfinite(right)
    if not keep.any():
        return PairwiseResult(float("nan"), 0)
    margin = np.where(choice[keep] == "left", left[keep] - right[keep], right[keep] - left[keep])
    credit = np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))
    n = int(credit.size)
    return PairwiseResult(float(credit.mean()) if n >= MIN_PAIRS else float("nan"), n)


def quantile_match(order_by, values) -> np.ndarray:
    """`values` re-dealt in the rank order of `order_by`: the i-th smallest of `order_by` gets the i-th smallest
    value (ties broken by position). Used to turn a perfect ranking (the truth) into a perfectly calibrated
    prediction of the labels. NaN wherever either side is NaN."""
    o, v = as_float_array(order_by), as_float_array(values)
    if o.shape != v.shape:
        raise ValueError(f"order_by and values differ in length: {o.shape[0]} vs {v.shape[0]}")
    keep = np.isfinite(o) & np.isfinite(v)
    out = np.full(o.shape, np.nan)
    ranks = np.argsort(np.argsort(o[keep], kind="stable"), kind="stable")
    out[keep] = np.sort(v[keep])[ranks]
    return out


# ---- the label-noise ceiling -------------------------------------------------------------------------------

def win_rate_scores(votes: pd.DataFrame) -> pd.Series:
    """A fast, order-free score per location_id: (wins + ties/2 + 1) / (comparisons + 2).

    The +1/+2 (a uniform prior) keeps an image seen once from sitting at exactly 0 or 1.
    """
    choice = votes["choice"].astype(str).str.strip().str.lower().to_numpy()
    left, right = votes["left"].astype(str).to_numpy(), votes["right"].astype(str).to_numpy()
    left_credit = np.select([choice == "left", choice == "equal"], [1.0, 0.5], 0.0)
    ids = np.concatenate([left, right])
    credit = np.concatenate([left_credit, 1.0 - left_credit])
    table = pd.DataFrame({"id": ids, "credit": credit}).groupby("id")["credit"].agg(["sum", "count"])
    return (table["sum"] + 1.0) / (table["count"] + 2.0)


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """Reliability of a measure `factor` times as long as one whose reliability is r."""
    if not np.isfinite(r) or factor * r + (1 - r) == 0:
        return float("nan")
    return float(factor * r / (1 + (factor - 1) * r))


def split_half_reliability(votes: pd.DataFrame,
                           score_fn: Callable[[pd.DataFrame], pd.Series] | None = None,
                           seed: int = 0, n_splits: int = 5, ids=None) -> float:
    """How reproducible the crowd's scores are: the votes of ONE study are split in two random halves, each half
    is scored (score_fn: votes -> Series by location_id; default win_rate_scores), and the Spearman between the
    two halves' scores, averaged over `n_splits` random splits, is Spearman-Brown corrected to the full number
    of votes. `ids` restricts the correlation to those images (e.g. the test split).

    Votes are shuffled and dealt alternately, so each image's votes fall about half in each half (a vote
    belongs to two images, so an exact per-image split is not possible). NaN with too few votes.
    """
    score_fn = score_fn or win_rate_scores
    keep_ids = None if ids is None else set(map(str, ids))
    rng = np.random.default_rng(seed)
    correlations = []
    for _ in range(n_splits):
        order = rng.permutation(len(votes))
        halves = [votes.iloc[np.sort(order[k::2])] for k in (0, 1)]
        if min(len(h) for h in halves) == 0:
            break
        a, b = (score_fn(h) for h in halves)
        a.index, b.index = a.index.astype(str), b.index.astype(str)
        common = a.index.intersection(b.index)
        if keep_ids is not None:
            common = common[common.isin(keep_ids)]
        r = spearman(a.loc[common], b.loc[common])
        if np.isfinite(r):
            correlations.append(r)
    if not correlations:
        return float("nan")
    return spearman_brown(float(np.mean(correlations)))


def reliability_ceiling(reliability: float) -> float:
    """The correlation a perfect predictor of the true perception would reach against labels of this
    reliability (classical test theory: corr(label, truth) = sqrt(reliability)). 0 for a reliability <= 0."""
    if not np.isfinite(reliability):
        return float("nan")
    return float(np.sqrt(min(max(reliability, 0.0), 1.0)))


def label_noise_ceiling(labels=None, truth=None, votes: pd.DataFrame | None = None,
                        score_fn: Callable[[pd.DataFrame], pd.Series] | None = None,
                        seed: int = 0, n_splits: int = 5, ids=None) -> dict[str, float]:
    """The label-noise ceiling of one study, from whatever is available.

    With `votes`: label_reliability (split-half, Spearman-Brown corrected) and label_ceiling = its square root
    (the Spearman against the labels that a perfect model would get). With `labels` and `truth` (aligned
    arrays, the synthetic city): label_spearman_truth = Spearman(label, truth), the direct measure.
    """
    out: dict[str, float] = {}
    if votes is not None:
        rel = split_half_reliability(votes, score_fn=score_fn, seed=seed, n_splits=n_splits, ids=ids)
        out["label_reliability"] = rel
        out["label_ceiling"] = reliability_ceiling(rel)
    if labels is not None and truth is not None:
        out["label_spearman_truth"] = spearman(labels, truth)
    return out
