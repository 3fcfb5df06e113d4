"""Losses on hand-made cases: masking, ties, gradients, the combined loss."""
import math

import pytest
import torch

from perceptions.train.losses import combined_loss, masked_regression_loss, pairwise_ranking_loss

NAN = float("nan")


def test_regression_ignores_unrated_cells():
    pred = torch.tensor([[2.0, 5.0], [4.0, 9.0]])
    target = torch.tensor([[3.0, NAN], [NAN, 7.0]])
    # Only (0,0): 1^2 and (1,1): 2^2 count -> mean 2.5
    assert masked_regression_loss(pred, target).item() == pytest.approx(2.5)


def test_regression_unrated_cell_gets_no_gradient():
    pred = torch.tensor([[2.0, 5.0]], requires_grad=True)
    masked_regression_loss(pred, torch.tensor([[3.0, NAN]])).backward()
    assert pred.grad[0, 1].item() == 0.0
    assert pred.grad[0, 0].item() != 0.0


def test_regression_with_nothing_rated_is_zero_and_backpropagates():
    pred = torch.tensor([[2.0, 5.0]], requires_grad=True)
    loss = masked_regression_loss(pred, torch.full((1, 2), NAN))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(pred.grad == 0)


def test_ranking_prefers_the_winner():
    left_wins = torch.tensor([1.0])
    right_ahead = pairwise_ranking_loss(torch.tensor([1.0]), torch.tensor([3.0]), left_wins)
    left_ahead = pairwise_ranking_loss(torch.tensor([3.0]), torch.tensor([1.0]), left_wins)
    assert left_ahead < right_ahead
    assert left_ahead.item() == pytest.approx(math.log1p(math.exp(-2.0)))


def test_ranking_tie_pulls_scores_together():
    left = torch.tensor([4.0], requires_grad=True)
    right = torch.tensor([6.0], requires_grad=True)
    pairwise_ranking_loss(left, right, torch.tensor([0.5])).backward()
    assert left.grad.item() < 0 < right.grad.item()  # descent raises left, lowers right
    # A tie is best fitted by equal scores.
    equal = pairwise_ranking_loss(torch.tensor([5.0]), torch.tensor([5.0]), torch.tensor([0.5]))
    apart = pairwise_ranking_loss(torch.tensor([5.0]), torch.tensor([6.0]), torch.tensor([0.5]))
    assert equal < apart


def test_ranking_is_symmetric_under_swapping_sides():
    a, b = torch.tensor([2.0, 7.0]), torch.tensor([5.0, 1.0])
    wins = torch.tensor([1.0, 0.0])
    assert pairwise_ranking_loss(a, b, wins).item() == pytest.approx(pairwise_ranking_loss(b, a, 1 - wins).item())


def test_combined_both_is_the_sum():
    pred = torch.tensor([[2.0], [6.0]])
    target = torch.tensor([[3.0], [6.0]])
    sl, sr, w = torch.tensor([2.0]), torch.tensor([6.0]), torch.tensor([0.0])
    reg = combined_loss("regression", pred, target)
    rank = combined_loss("ranking", pred, target, sl, sr, w)
    both = combined_loss("both", pred, target, sl, sr, w)
    assert both.item() == pytest.approx(reg.item() + rank.item())
    with pytest.raises(ValueError):
        combined_loss("both", pred, target)
