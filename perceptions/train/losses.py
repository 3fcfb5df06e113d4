"""Training losses: masked regression on scaled scores, and a pairwise ranking loss on raw votes.

An image can lack a score for some studies (PP2 does not rate every image in every study), so the regression
loss averages only over the (image, study) cells that hold a score. The ranking loss learns directly from the
crowd's clicks, as RankNet / the PP2 paper's RSS-CNN do: P(left beats right) = sigmoid(scale * (s_l - s_r)); a
tie ("equal") has target 1/2, whose optimum is s_l = s_r, so ties pull the two scores together.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F



def masked_regression_loss(pred: torch.Tensor, target: torch.Tensor, count: float | None = None) -> torch.Tensor:
    """Mean squared error over the cells of `target` that are not NaN; (B, S) each.

    count: divide the sum by this instead of by the number of rated cells here (under DDP: the mean count per
    rank, so that the ranks' averaged gradients are those of the global masked mean).
    A batch with no score at all gives 0 (still attached to the graph, so backward() works).
    """
    pred = pred.float()
    rated = ~torch.isnan(target)
    if not bool(rated.any()):
        return pred.sum() * 0.0
    diff = pred[rated] - target[rated]
    return (diff * diff).mean() if count is None else (diff * diff).sum() / count


def pairwise_ranking_loss(score_left: torch.Tensor, score_right: torch.Tensor, left_wins: torch.Tensor,
                          scale: float = 1.0, count: float | None = None) -> torch.Tensor:
    """Logistic (RankNet) loss on score differences; `left_wins` holds 1, 0 or 0.5 (tie) per vote.
    count: as in masked_regression_loss, for the votes."""
    if score_left.numel() == 0:
        return score_left.float().sum() * 0.0
    logits = scale * (score_left.float() - score_right.float())
    if count is None:
        return F.binary_cross_entropy_with_logits(logits, left_wins.float())
    return F.binary_cross_entropy_with_logits(logits, left_wins.float(), reduction="sum") / count


def combined_loss(kind: str, pred: torch.Tensor, target: torch.Tensor,
                  pair_left: torch.Tensor | None = None, pair_right: torch.Tensor | None = None,
                  left_wins: torch.Tensor | None = None, ranking_weight: float = 1.0,
                  ranking_scale: float = 1.0, counts: tuple[float, float] | None = None) -> torch.Tensor:
    """'regression', 'ranking' or 'both' (their sum, the ranking term weighted). counts: (rated cells, votes)
    to divide by instead of this batch's own (see masked_regression_loss)."""
    cells, votes = counts if counts is not None else (None, None)
    loss = pred.float().sum() * 0.0
    if kind in ("regression", "both"):
        loss = loss + masked_regression_loss(pred, target, cells)
    if kind in ("ranking", "both"):
        if pair_left is None:
            raise ValueError(f"loss {kind!r} needs vote pairs")
        loss = loss + ranking_weight * pairwise_ranking_loss(pair_left, pair_right, left_wins, ranking_scale, votes)
    return loss
