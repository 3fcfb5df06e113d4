"""PerceptionNet: a pretrained backbone cut at its pooling layer plus a small head with one output per study.

Backbone and head are separate modules so the trainer can freeze the backbone, cache its features once, and
train the head on them (`net.features(x)` then `net.head(f)` equals `net(x)`), then unfreeze with a lower
learning rate for the backbone (`param_groups`).
"""
from __future__ import annotations

import torch
from torch import nn

from perceptions.errors import PerceptionsError
from perceptions.studies import study

# Outputs live on the 1..10 scale; starting every study in the middle keeps the first steps' loss sensible.
HEAD_BIAS_INIT = 5.5
DEFAULT_DROPOUT = 0.2


class PerceptionHead(nn.Module):
    """Pooled features (B, F) -> one score per study (B, S)."""

    def __init__(self, num_features: int, num_outputs: int, dropout: float = DEFAULT_DROPOUT):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(num_features, num_outputs)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.constant_(self.linear.bias, HEAD_BIAS_INIT)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(features))


class PerceptionNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_features: int, studies, dropout: float = DEFAULT_DROPOUT,
                 backbone_name: str | None = None, weights: str | None = None):
        super().__init__()
        studies = [study(s).name for s in studies]
        if not studies or len(set(studies)) != len(studies):
            raise PerceptionsError(f"a model needs one or more distinct studies, got {studies!r}")
        self.backbone = backbone
        self.head = PerceptionHead(num_features, len(studies), dropout)
        self.studies = studies
        self.num_features = int(num_features)
        self.dropout = float(dropout)
        self.backbone_name = backbone_name      # recorded in the model package
        self.weights = weights                  # where the backbone's starting weights came from
        self.backbone_trainable = True
        self.frozen_stages = 0                  # leading backbone stages kept frozen while the rest trains

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> pooled backbone features (B, F)."""
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> scores (B, S), one column per study in `self.studies` order."""
        return self.head(self.features(images))

    def set_backbone_trainable(self, trainable: bool, frozen_stages: int = 0) -> None:
        """Freeze or unfreeze the backbone. A frozen backbone also stays in eval mode (batch-norm statistics
        fixed), so its features match a feature cache and the packaged weights stay untouched.

        frozen_stages: when unfreezing, the first stages (nets.backbones.backbone_stages: the stem, then block
        groups) stay frozen and in eval mode all the same. Nothing before them needs a gradient, so backward
        stops where they end, and their outputs can be computed once and cached (train/stage_cache.py)."""
        from perceptions.nets.backbones import split_backbone

        self.backbone_trainable = bool(trainable)
        for p in self.backbone.parameters():
            p.requires_grad_(self.backbone_trainable)
        self.frozen_stages = int(frozen_stages) if trainable else 0
        if self.frozen_stages:
            for p in split_backbone(self.backbone, self.frozen_stages)[2]:
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.backbone_trainable:
            self.backbone.eval()
        elif self.frozen_stages:
            from perceptions.nets.backbones import split_backbone

            split_backbone(self.backbone, self.frozen_stages)[0].eval()
        return self

    def param_groups(self, lr: float, backbone_lr_mult: float = 0.1, weight_decay: float | None = None):
        """Optimizer groups: the head at `lr`, the trainable backbone at `lr * backbone_lr_mult`.
        With weight_decay, biases and norm parameters (1-D) get none, as is usual for AdamW."""
        groups = []
        for name, module, group_lr in (("head", self.head, lr), ("backbone", self.backbone, lr * backbone_lr_mult)):
            params = [p for p in module.parameters() if p.requires_grad]
            if not params:
                continue
            if weight_decay is None:
                groups.append({"name": name, "params": params, "lr": group_lr})
                continue
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            groups += [g for g in (
                {"name": name, "params": decay, "lr": group_lr, "weight_decay": weight_decay},
                {"name": f"{name}_no_decay", "params": no_decay, "lr": group_lr, "weight_decay": 0.0},
            ) if g["params"]]
        return groups


def build_net(backbone_name: str, studies, weights: str = "packaged", dropout: float = DEFAULT_DROPOUT):
    """-> (PerceptionNet, Preprocess resolved from the backbone's weights)."""
    from perceptions.nets.backbones import create_backbone, resolve_backbone

    backbone, preprocess, num_features = create_backbone(backbone_name, weights)
    name = resolve_backbone(backbone_name).name
    net = PerceptionNet(backbone, num_features, studies, dropout=dropout, backbone_name=name,
                        weights=str(weights))
    return net, preprocess
