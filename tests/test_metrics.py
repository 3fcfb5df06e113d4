"""Metric functions on hand-made cases: ties, NaN, perfect and inverted predictions, deciles off by one."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from perceptions.evaluate import metrics as M

nan = float("nan")


# ---- decile accuracy ------------------------------------------------------------------------------------

def test_decile_accuracy_exact_and_within_one_by_hand():
    pred, true = [1, 2, 3, 10], [1, 3, 5, 9]  # differences 0, 1, 2, 1
    assert M.decile_accuracy(pred, true, tolerance=0) == 0.25
    assert M.decile_accuracy(pred, true, tolerance=1) == 0.75


def test_deciles_off_by_one_are_never_exact_but_always_within_one():
    true = np.arange(1, 10)
    assert M.decile_accuracy(true + 1, true, tolerance=0) == 0.0
    assert M.decile_accuracy(true + 1, true, tolerance=1) == 1.0
    assert M.decile_accuracy(true - 1, true, tolerance=1) == 1.0


def test_decile_accuracy_drops_nan_pairs_on_either_side():
    pred = [1, nan, 3, 4, None]
    true = [1, 2, nan, 5, 5]
    assert M.decile_accuracy(pred, true, tolerance=0) == 0.5  # pairs (1,1) and (4,5)
    assert M.decile_accuracy(pd.Series(pred, dtype="Float64"), true, tolerance=1) == 1.0


# ---- correlations and errors ----------------------------------------------------------------------------

def test_spearman_uses_average_ranks_for_ties():
    pred, true = [1, 2, 2, 3], [1, 2, 3, 4]
    # ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4): cov 4.5 / sqrt(4.5 * 5)
    assert M.spearman(pred, true) == pytest.approx(4.5 / math.sqrt(22.5))
    assert M.spearman(pred, true) == pytest.approx(stats.spearmanr(pred, true).statistic)


def test_spearman_ties_on_both_sides_match_scipy():
    rng = np.random.default_rng(0)
    pred, true = rng.integers(0, 4, 50), rng.integers(0, 3, 50)
    assert M.spearman(pred, true) == pytest.approx(stats.spearmanr(pred, true).statistic)


def test_perfect_and_inverted_predictions():
    true = np.array([1.0, 2.5, 4.0, 7.0, 10.0])
    assert M.spearman(true, true) == 1.0
    assert M.pearson(true * 2 + 1, true) == pytest.approx(1.0)
    assert M.r2(true, true) == 1.0
    assert M.mae(true, true) == 0.0
    inverted = 11 - true
    assert M.spearman(inverted, true) == -1.0
    assert M.pearson(inverted, true) == pytest.approx(-1.0)
    assert M.r2(inverted, true) < 0


def test_r2_and_mae_by_hand():
    assert M.r2([1, 2, 4], [1, 2, 3]) == pytest.approx(0.5)  # SS_res 1, SS_tot 2
    assert M.mae([1, 2, 4], [1, 2, 3]) == pytest.approx(1 / 3)
    # r2 is not symmetric: the truth's variance is the denominator
    assert M.r2([1, 2, 3], [1, 2, 4]) == pytest.approx(1 - 1 / (14 / 3))


def test_nan_pairs_are_dropped_the_same_way_in_every_function():
    pred = [1, 2, nan, 4, 5, 3]
    true = [1, 2, 3, nan, 5, None]
    for fn in (M.spearman, M.pearson, M.r2, M.mae):
        assert fn(pred, true) == pytest.approx(fn([1, 2, 5], [1, 2, 5]))


@pytest.mark.parametrize("fn", [M.spearman, M.pearson, M.r2, M.mae])
def test_fewer_than_two_valid_pairs_give_nan_not_a_crash(fn):
    assert math.isnan(fn([], []))
    assert math.isnan(fn([1.0], [2.0]))
    assert math.isnan(fn([1.0, nan, 3], [nan, 2, nan]))
    assert math.isnan(M.decile_accuracy([3], [3]))


def test_constant_inputs_give_nan_correlations():
    assert math.isnan(M.spearman([3, 3, 3], [1, 2, 3]))
    assert math.isnan(M.pearson([1, 2, 3], [5, 5, 5]))
    assert math.isnan(M.r2([1, 2, 3], [5, 5, 5]))
    assert M.mae([1, 2, 3], [5, 5, 5]) == 3.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        M.spearman([1, 2, 3], [1, 2])


# ---- decile confusion -----------------------------------------------------------------------------------

def test_decile_confusion_counts_rows_true_columns_predicted():
    counts = M.decile_confusion([1, 2, 2, 10, nan, 0, 11], [1, 1, 3, 10, 4, 5, 5])
    assert counts.shape == (10, 10)
    assert counts.sum() == 4  # NaN and out-of-range deciles ignored
    assert counts[0, 0] == 1 and counts[0, 1] == 1 and counts[2, 1] == 1 and counts[9, 9] == 1


def test_quantile_match_deals_values_in_the_rank_order_of_another_array():
    out = M.quantile_match([0.3, -1.0, 2.0, nan, 0.5], [10, 40, 20, 30, nan])
    # valid pairs: positions 0, 1, 2 with values {10, 20, 40}; ranks of (0.3, -1, 2) are (1, 0, 2)
    assert out[:3].tolist() == [20, 10, 40]
    assert np.isnan(out[3]) and np.isnan(out[4])
    assert M.spearman(out, [0.3, -1.0, 2.0, nan, 0.5]) == 1.0


# ---- pairwise accuracy ----------------------------------------------------------------------------------

def test_pairwise_accuracy_by_hand():
    scores = {"a": 3.0, "b": 2.0, "c": 1.0, "d": nan, "f": 2.0}
    votes = pd.DataFrame([
        ("a", "b", "left"),    # a > b, left won: right
        ("a", "c", "right"),   # a > c, right won: wrong
        ("b", "c", "equal"),   # a tie vote: excluded
        ("c", "d", "left"),    # d has no finite prediction: skipped
        ("b", "e", "left"),    # e has no prediction at all: skipped
        ("c", "b", "right"),   # b > c, right won: right
        ("b", "f", "left"),    # predicted tie: half right
    ], columns=["left", "right", "choice"])
    acc, n = M.pairwise_accuracy(scores, votes)
    assert n == 4
    assert acc == pytest.approx(2.5 / 4)
    # a Series works the same, and the study filter keeps only that study's votes
    votes["study"] = ["safe"] * 6 + ["lively"]
    res = M.pairwise_accuracy(pd.Series(scores), votes, study="safe")
    assert (res.accuracy, res.n) == (pytest.approx(2 / 3), 3)


def test_pairwise_accuracy_without_usable_votes_is_nan():
    votes = pd.DataFrame({"left": ["a"], "right": ["b"], "choice": ["equal"]})
    acc, n = M.pairwise_accuracy({"a": 1.0, "b": 2.0}, votes)
    assert math.isnan(acc) and n == 0


# ---- label-noise ceiling --------------------------------------------------------------------------------

def simulated_crowd(n_images=500, votes_per_image=6, noise=1.0, seed=0):
    """Thurstone crowd on a known truth: the chosen image is the one that looks better through noise."""
    rng = np.random.default_rng(seed)
    truth = pd.Series(rng.normal(size=n_images), index=[f"id{i:04d}" for i in range(n_images)])
    ids = truth.index.to_numpy()
    left = rng.integers(0, n_images, n_images * votes_per_image // 2)
    right = rng.integers(0, n_images, left.size)
    left, right = left[left != right], right[left != right]
    seen = truth.to_numpy()[left] - truth.to_numpy()[right] + rng.normal(scale=noise, size=left.size)
    choice = np.where(np.abs(seen) < 0.15, "equal", np.where(seen > 0, "left", "right"))
    return pd.DataFrame({"study": "safe", "left": ids[left], "right": ids[right], "choice": choice}), truth


def test_spearman_brown_by_hand():
    assert M.spearman_brown(0.5) == pytest.approx(2 / 3)
    assert M.spearman_brown(1.0) == 1.0
    assert math.isnan(M.spearman_brown(nan))
    assert M.reliability_ceiling(0.64) == pytest.approx(0.8)
    assert M.reliability_ceiling(-0.2) == 0.0


def test_win_rate_scores_by_hand():
    votes = pd.DataFrame({"left": ["a", "a", "b"], "right": ["b", "c", "c"], "choice": ["left", "equal", "right"]})
    s = M.win_rate_scores(votes)
    assert s["a"] == pytest.approx((1.5 + 1) / (2 + 2))
    assert s["b"] == pytest.approx((0 + 1) / (2 + 2))
    assert s["c"] == pytest.approx((1.5 + 1) / (2 + 2))


def test_ceiling_matches_label_vs_truth_on_a_simulated_crowd():
    votes, truth = simulated_crowd(votes_per_image=8)
    labels = M.win_rate_scores(votes)
    out = M.label_noise_ceiling(labels.to_numpy(), truth.loc[labels.index].to_numpy(), votes=votes)
    # estimated from the votes alone, the ceiling predicts the directly measured Spearman(label, truth)
    # (500 images only: tests/test_ceiling.py holds it to 0.02 on larger crowds)
    assert out["label_reliability"] == pytest.approx(out["label_ceiling"] ** 2)
    assert 0.5 < out["label_reliability"] < 0.95
    assert out["label_ceiling"] == pytest.approx(out["label_spearman_truth"], abs=0.03)
    # the former estimate, split-half + Spearman-Brown + square root, ran low
    assert M.reliability_ceiling(M.split_half_reliability(votes)) < out["label_spearman_truth"] - 0.02


def test_split_half_reliability_grows_with_votes_and_is_seeded():
    few, _ = simulated_crowd(votes_per_image=4)
    many, _ = simulated_crowd(votes_per_image=40)
    assert M.split_half_reliability(many) > M.split_half_reliability(few) + 0.2
    # the seed picks the random splits: the same seed gives the same value, another seed other splits
    assert M.split_half_reliability(few, seed=3) == M.split_half_reliability(few, seed=3)
    assert M.split_half_reliability(few, seed=4) != M.split_half_reliability(few, seed=3)
    assert M.split_half_reliability(few, seed=4) == pytest.approx(M.split_half_reliability(few, seed=3), abs=0.05)


def test_ceiling_is_seeded():
    votes, _ = simulated_crowd(votes_per_image=6)
    first = M.label_noise_ceiling(votes=votes, seed=3)["label_ceiling"]
    assert M.label_noise_ceiling(votes=votes, seed=3)["label_ceiling"] == first
    other = M.label_noise_ceiling(votes=votes, seed=4)["label_ceiling"]
    # another seed simulates other crowds: a different value, yet the same estimate within its noise
    assert other != first and other == pytest.approx(first, abs=0.02)


def test_split_half_of_a_coin_flipping_crowd_is_near_zero_and_ids_restrict():
    votes, _ = simulated_crowd(votes_per_image=10)
    rng = np.random.default_rng(1)
    votes["choice"] = rng.choice(["left", "right"], len(votes))
    assert abs(M.split_half_reliability(votes)) < 0.25
    assert math.isnan(M.split_half_reliability(votes, ids=["id0001"]))
    assert math.isnan(M.split_half_reliability(votes.iloc[:1]))
