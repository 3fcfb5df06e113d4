"""The optimiser and its learning-rate schedule: AdamW, linear warm-up, then cosine decay per step.

Each phase (frozen head, then fine-tuning) gets its own optimiser and schedule: the head-only phase trains at
`head_lr_frozen` on cached features, fine-tuning at `lr` with the backbone at `lr * backbone_lr_mult`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from perceptions.train.config import TrainConfig

MIN_LR_FRACTION = 0.02  # cosine decays to 2% of the peak, not to 0: the last steps still learn a little


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from 1 down to MIN_LR_FRACTION at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(net, config: TrainConfig, phase: str) -> torch.optim.AdamW:
    frozen = phase == "frozen" or config.backbone_lr_mult == 0
    net.set_backbone_trainable(not frozen, config.frozen_stage_count)  # the first frozen_stages stay as they are
    lr = config.head_lr_frozen if phase == "frozen" else config.lr
    groups = net.param_groups(lr, config.backbone_lr_mult, weight_decay=config.weight_decay)
    for g in groups:
        g["peak_lr"] = g["lr"]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


def set_lr(optimizer, factor: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = g["peak_lr"] * factor


@dataclass
class Schedule:
    """Where an epoch sits in its phase: steps per epoch, the phase's first epoch, total and warm-up steps."""
    first: int
    steps: int
    total: int
    warmup: int
    total_epochs: int

    @classmethod
    def for_phase(cls, first: int, last: int, steps: int, warmup_frac: float, total_epochs: int) -> "Schedule":
        total = steps * (last - first + 1)
        return cls(first, steps, total, max(1, round(warmup_frac * total)), total_epochs)

    def step_of(self, epoch: int, i: int) -> int:
        return (epoch - self.first) * self.steps + i

    def factor(self, epoch: int, i: int) -> float:
        return lr_factor(self.step_of(epoch, i), self.total, self.warmup)
