"""SmallCNN: a few conv-BN-ReLU stages with 2x max pooling, then global average pooling.

The CPU-demo backbone of the contrastive and classification trainers: cheap enough to train in
seconds on 32-96 px images, deep enough to learn shapes. Any input size works (the global pool
removes the spatial size); each stage halves the image, so keep sides >= 2**len(widths).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ml.errors import ConfigError


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """`len(widths)` stages of (conv3x3-BN-ReLU) x `convs_per_stage`, each followed by a 2x max
    pool, then a global average pool: (N, 3, H, W) -> (N, widths[-1])."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), convs_per_stage: int = 1,
                 in_channels: int = 3):
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1 or convs_per_stage < 1:
            raise ConfigError(f"SmallCNN: widths={widths} and convs_per_stage={convs_per_stage}; "
                              "need at least one stage of positive width and one conv per stage")
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(convs_per_stage):
                layers.append(conv_bn_relu(channels, width))
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)
