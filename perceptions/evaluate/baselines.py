"""What a decile accuracy is worth: the +-1 and exact decile accuracy of two models that know nothing about
the images, computed exactly from the label deciles of the evaluated images (no sampling).

- constant: every image gets the same score, the training split's median label. Deciles are cut with
  `Scaling.decile`'s rule (`searchsorted(edges, x, side="right") + 1`: a score equal to an edge goes up), and
  the median is the 5th of the 9 edges (the 50% quantile of the training labels), so the constant lands in
  decile 6, or higher where the edges above the median tie with it (`constant_decile`). We take this honest
  constant rather than the decile that would score best on the evaluated images, which peeks at the test labels.
- random: the ranks are a random permutation of the labels, i.e. each predicted decile is drawn from the label
  decile histogram independently of the image's own: P(|d_pred - d_true| <= k) = sum over |i - j| <= k of
  p_i * p_j. Uniform deciles give 28/100 within +-1 decile and 1/10 exact.
"""
from __future__ import annotations

import numpy as np

N_DECILES = 10
MEDIAN_EDGE = 4       # index of the 50% quantile among the 9 inner decile edges (10%..90%)
MEDIAN_DECILE = 6     # where a constant at the median lands when no edge ties with it


def decile_histogram(deciles) -> np.ndarray:
    """Share of each decile 1..10 (index 0 is decile 1) among the entries that are deciles 1..10; all zeros
    when there are none (NaN and 0, the 'missing' decile, are left out)."""
    d = np.asarray(deciles, dtype=float).ravel()
    d = d[np.isfinite(d) & (d >= 1) & (d <= N_DECILES)].astype(int)
    counts = np.bincount(d - 1, minlength=N_DECILES).astype(float)
    return counts / counts.sum() if counts.sum() else counts


def constant_decile(edges) -> int:
    """The decile a constant prediction at the training median falls in, by Scaling.decile's tie rule: the
    median is edges[4]; a value equal to an edge goes up, so 6 (higher if edges[5], ... equal the median)."""
    edges = np.asarray(edges, dtype=float)
    if edges.size != N_DECILES - 1 or not np.all(np.isfinite(edges)):
        return MEDIAN_DECILE
    return int(np.searchsorted(edges, edges[MEDIAN_EDGE], side="right") + 1)


def constant_accuracy(true_deciles, decile: int = MEDIAN_DECILE, tolerance: int = 1) -> float:
    """Share of images whose label decile is within `tolerance` of `decile` (the constant's); NaN if none."""
    p = decile_histogram(true_deciles)
    if not p.sum():
        return float("nan")
    near = np.abs(np.arange(1, N_DECILES + 1) - int(decile)) <= tolerance
    return float(p[near].sum())


def random_accuracy(true_deciles, tolerance: int = 1) -> float:
    """Expected share within `tolerance` when the predicted decile is drawn from the label decile histogram
    independently of the label (random ranks): sum_{|i-j| <= tolerance} p_i p_j. NaN if no deciles."""
    p = decile_histogram(true_deciles)
    if not p.sum():
        return float("nan")
    i = np.arange(N_DECILES)
    near = np.abs(i[:, None] - i[None, :]) <= tolerance
    return float(p @ near.astype(float) @ p)


def baseline_metrics(true_deciles, constant: int = MEDIAN_DECILE) -> dict[str, float]:
    """The four baseline keys `evaluate` reports beside acc_within_1_decile and acc_exact_decile."""
    return {
        "baseline_constant_within_1_decile": constant_accuracy(true_deciles, constant, tolerance=1),
        "baseline_constant_exact_decile": constant_accuracy(true_deciles, constant, tolerance=0),
        "baseline_random_within_1_decile": random_accuracy(true_deciles, tolerance=1),
        "baseline_random_exact_decile": random_accuracy(true_deciles, tolerance=0),
    }


def extreme_decile_shares(pred_deciles) -> dict[str, float]:
    """Share of the images in predicted decile 1 and 10 (about 0.1 each when predictions are calibrated;
    shrunk predictions leave them under-populated)."""
    p = decile_histogram(pred_deciles)
    if not p.sum():
        return {"share_pred_decile_1": float("nan"), "share_pred_decile_10": float("nan")}
    return {"share_pred_decile_1": float(p[0]), "share_pred_decile_10": float(p[-1])}
