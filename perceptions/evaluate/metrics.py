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
#
# The ceiling is the Spearman correlation between the crowd's label and the true perception: what a model that
# knew the truth would score against the labels. It is estimated from the votes alone, with no truth, by a
# calibrated simulation (a parametric bootstrap on the observed pair design):
#   1. one number says how consistent the crowd is: the concordance of the votes that share an image
#      (`vote_concordance`; 1 when every image wins all or loses all of its votes, 0 for coin flips);
#   2. a Thurstone crowd is simulated on the SAME pairs, in the same order, with the same share of ties, on a
#      normal latent perception dealt to the images at random; its noise is tuned until the simulated votes
#      are exactly as concordant as the observed ones (`fit_crowd_noise`);
#   3. votes of that crowd are scored with the labels' own scorer, and the Spearman of those labels with the
#      latent perception is the ceiling (`simulated_label_spearman`).
# On the synthetic city this matches the directly measured Spearman(label, truth) with no bias to speak of
# (mean error +0.002 at 6 votes per image, +0.003 at 3.5); per study its error shrinks like 1/sqrt(images), as
# the votes tell the crowd's noise better (sd 0.006 at 6 votes and 3000 images, 0.011 at 3.5 votes; see
# benchmarks/ceiling_check.py). The former estimate, split-half reliability + Spearman-Brown + square root, is
# kept as a reproducibility measure but no longer gives the ceiling: the halves have half the votes per image,
# and Spearman-Brown, a linear extrapolation, undershoots what the full votes give (about 0.03 low there).

CROWD_NOISE_RANGE = (0.01, 100.0)  # the crowd noise searched, in units of the latent perception's sd
_CHOICES = np.array(["left", "right", "equal"], dtype=object)


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


def spearman_on_common_ids(a: pd.Series, b: pd.Series, keep=None) -> float:
    """Spearman of two score Series over the location ids both have (and `keep` holds, when given)."""
    a, b = a.set_axis(a.index.astype(str)), b.set_axis(b.index.astype(str))
    common = a.index.intersection(b.index)
    if keep is not None:
        common = common[common.isin(keep)]
    return spearman(a.loc[common], b.loc[common])


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
    Not the label-noise ceiling: its square root runs low (see `label_noise_ceiling`).
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
        r = spearman_on_common_ids(*(score_fn(h) for h in halves), keep_ids)
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


class VoteDesign(NamedTuple):
    """Votes as integer arrays: left[k], right[k] index `ids`; code[k] is 0 left won, 1 right won, 2 equal."""
    left: np.ndarray
    right: np.ndarray
    code: np.ndarray
    ids: np.ndarray


def vote_design(votes: pd.DataFrame) -> VoteDesign:
    """The pairs and outcomes of a vote table (left, right, choice), in its row order."""
    choice = votes["choice"].astype(str).str.strip().str.lower().to_numpy()
    code = np.select([choice == "left", choice == "right"], [0, 1], 2)
    n = len(votes)
    index, ids = pd.factorize(np.concatenate([votes["left"].astype(str).to_numpy(),
                                              votes["right"].astype(str).to_numpy()]))
    return VoteDesign(index[:n], index[n:], code, np.asarray(ids, dtype=object))


def vote_concordance(left, right, code, n_items: int | None = None) -> float:
    """How consistent the votes are: over all pairs of votes that share an image, the mean product of that
    image's outcomes (+1 won, -1 lost, 0 equal), among pairs where both are decided. 1: every image won all or
    lost all of its votes; about 0: coin flips. NaN when no image has two decided votes."""
    left, right, code = np.asarray(left), np.asarray(right), np.asarray(code)
    n_items = int(n_items if n_items is not None else max(left.max(initial=-1), right.max(initial=-1)) + 1)
    won = np.select([code == 0, code == 1], [1.0, -1.0], 0.0)  # from the left image's side
    items = np.concatenate([left, right])
    outcome = np.concatenate([won, -won])
    total = np.bincount(items, weights=outcome, minlength=n_items)
    decided = np.bincount(items, weights=outcome * outcome, minlength=n_items)
    pairs = np.sum(decided * (decided - 1))  # twice the pairs of decided votes sharing an image
    if pairs <= 0:
        return float("nan")
    return float(np.sum(total * total - decided) / pairs)


def _simulate_codes(design: VoteDesign, latent: np.ndarray, noise_sd: float, tie_share: float, rng) -> np.ndarray:
    """Thurstone votes on the design's pairs: perceived = latent[left] - latent[right] + N(0, noise_sd^2), and
    the `tie_share` smallest perceived differences (in absolute value) are "equal"."""
    perceived = latent[design.left] - latent[design.right] + noise_sd * rng.standard_normal(design.left.size)
    size = np.abs(perceived)
    k = int(round(tie_share * size.size))
    tie = np.zeros(size.size, dtype=bool)
    if k > 0:
        tie[np.argpartition(size, k - 1)[:k]] = True
    return np.where(tie, 2, np.where(perceived > 0, 0, 1))


def _normal_scores(n: int) -> np.ndarray:
    """n evenly spaced quantiles of N(0, 1): a latent perception, to be dealt to the images in random order."""
    from scipy.stats import norm
    return norm.ppf((np.arange(n) + 0.5) / n)


def fit_crowd_noise(design: VoteDesign, rng, draws: int = 2, refine: int = 16) -> float:
    """The noise sd (in units of the latent perception's sd) of a Thurstone crowd whose votes on this design,
    with this share of ties, are as concordant as the observed ones. NaN when the concordance is undefined.

    A coarse grid over CROWD_NOISE_RANGE (log scale, `draws` simulated crowds per point) brackets the answer,
    then `refine` crowds around it fit the concordance linearly in log noise, which is solved for the observed
    concordance. Only random numbers and counting: no scoring, so this is fast.
    """
    n = design.ids.size
    observed = vote_concordance(design.left, design.right, design.code, n)
    if not np.isfinite(observed):
        return float("nan")
    tie_share = float(np.mean(design.code == 2))
    scores = _normal_scores(n)

    def concordance(log_sd: float) -> float:
        codes = _simulate_codes(design, scores[rng.permutation(n)], float(np.exp(log_sd)), tie_share, rng)
        return vote_concordance(design.left, design.right, codes, n)

    lo, hi = np.log(CROWD_NOISE_RANGE[0]), np.log(CROWD_NOISE_RANGE[1])
    grid = np.arange(lo, hi + 1e-9, 0.25)
    curve = np.array([np.mean([concordance(g) for _ in range(draws)]) for g in grid])
    curve = np.minimum.accumulate(curve)  # more noise, less concordance: force it monotone
    first = float(np.interp(observed, curve[::-1], grid[::-1]))
    if not np.isfinite(first):  # a sparse design whose simulated concordance is undefined: cannot tell
        return float("nan")
    around = first + np.linspace(-0.3, 0.3, refine)
    values = np.array([concordance(g) for g in around])
    defined = np.isfinite(values)
    if defined.sum() < 2:
        return float(np.exp(first))
    slope, intercept = np.polyfit(around[defined], values[defined], 1)
    best = (observed - intercept) / slope if slope < 0 else first
    return float(np.exp(np.clip(best, max(lo, first - 0.6), min(hi, first + 0.6))))


def simulated_label_spearman(votes: pd.DataFrame, noise_sd: float,
                             score_fn: Callable[[pd.DataFrame], pd.Series] | None = None,
                             seed: int = 0, n_sims: int = 5, ids=None, design: VoteDesign | None = None) -> float:
    """Mean over `n_sims` simulated crowds (Thurstone noise `noise_sd` on a normal latent, the observed pairs,
    order and tie share) of Spearman(label of the simulated votes scored by `score_fn`, latent), over `ids`."""
    score_fn = score_fn or win_rate_scores
    design = design if design is not None else vote_design(votes)
    rng = np.random.default_rng(seed)
    n = design.ids.size
    tie_share = float(np.mean(design.code == 2))
    keep = None if ids is None else pd.Index(pd.unique(np.asarray(list(map(str, ids)), dtype=object)))
    scores = _normal_scores(n)
    correlations = []
    for _ in range(max(1, int(n_sims))):
        latent = pd.Series(scores[rng.permutation(n)], index=design.ids)
        codes = _simulate_codes(design, latent.to_numpy(), noise_sd, tie_share, rng)
        r = spearman_on_common_ids(score_fn(votes.assign(choice=_CHOICES[codes])), latent, keep)
        if np.isfinite(r):
            correlations.append(r)
    return float(np.mean(correlations)) if correlations else float("nan")


def estimate_label_ceiling(votes: pd.DataFrame, score_fn: Callable[[pd.DataFrame], pd.Series] | None = None,
                           seed: int = 0, n_sims: int = 5, ids=None) -> tuple[float, float]:
    """(ceiling, crowd noise): the Spearman between the labels `score_fn` makes from these votes (one study) and
    the true perception, over `ids`, estimated from the votes alone (see the notes above), and the fitted crowd
    noise in units of the perception's sd. NaN with too few votes to tell."""
    if votes is None or len(votes) < MIN_PAIRS:
        return float("nan"), float("nan")
    design = vote_design(votes)
    noise_sd = fit_crowd_noise(design, np.random.default_rng([seed, 1]))
    if not np.isfinite(noise_sd):
        return float("nan"), float("nan")
    rho = simulated_label_spearman(votes, noise_sd, score_fn, seed=seed, n_sims=n_sims, ids=ids, design=design)
    return (float(min(max(rho, 0.0), 1.0)) if np.isfinite(rho) else float("nan")), noise_sd


def label_noise_ceiling(labels=None, truth=None, votes: pd.DataFrame | None = None,
                        score_fn: Callable[[pd.DataFrame], pd.Series] | None = None,
                        seed: int = 0, n_splits: int = 5, ids=None) -> dict[str, float]:
    """The label-noise ceiling of one study, from whatever is available.

    With `votes` (ALL the votes of the study, as the labels were made from them; `ids` the images evaluated):
    label_ceiling, the Spearman a perfect model of the true perception would reach against the labels, estimated
    from the votes alone by a simulated crowd calibrated on them (see `estimate_label_ceiling`; `score_fn` must
    score votes as the labels were scored, default a win rate; `n_splits` simulated crowds are scored, the name
    kept from the former split-half estimate), and label_reliability = label_ceiling^2 (the share of the labels'
    rank variance that is true perception). With `labels` and `truth` (aligned arrays, the synthetic city):
    label_spearman_truth = Spearman(label, truth), the direct measure.
    """
    out: dict[str, float] = {}
    if votes is not None:
        ceiling, _ = estimate_label_ceiling(votes, score_fn=score_fn, seed=seed, n_sims=n_splits, ids=ids)
        out["label_reliability"] = ceiling ** 2 if np.isfinite(ceiling) else float("nan")
        out["label_ceiling"] = ceiling
    if labels is not None and truth is not None:
        out["label_spearman_truth"] = spearman(labels, truth)
    return out
