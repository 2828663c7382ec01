"""ImageClassifier: a backbone (ml.models.backbones) and a linear layer over its features."""

from __future__ import annotations

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """(N, 3, H, W) -> (N, num_classes) logits."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(x)))
