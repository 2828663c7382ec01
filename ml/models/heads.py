"""Heads on top of a face backbone: margin classifiers for training and the occlusion head.

- ArcFaceHead (Deng et al. 2019, insightface arcface_torch `ArcFace`): logits s * cos(theta)
  with the target class's angle widened to cos(theta + m); where theta + m would pass pi the
  insightface fallback cos(theta) - m sin(m) keeps the target logit monotonic.
- AdaFaceHead (Kim et al. 2022, mk-minchul/AdaFace `head.AdaFace`): the margin adapts to image
  quality, read from the embedding norm standardised by running batch statistics
  (t_alpha = their momentum): high-norm (clear) faces get an angular margin like ArcFace,
  low-norm (hard) ones an additive margin like CosFace, so unrecognisable images are not pushed
  as hard.
- OcclusionHead: a 1x1-conv predictor of which cells of the backbone's last feature map are
  visible (logits; 1 = visible), supervised by the occlusion masks the face transforms return.

Class weights are kept as (classes, embedding) rows; cosines are computed in float32 whatever
the autocast dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ml.errors import ConfigError

MARGIN_HEADS = ("arcface", "adaface")


class MarginHead(nn.Module):
    """Normalised class centres; `cosine(embeddings)` is (N, classes) in [-1, 1]."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"a margin head needs at least 2 classes (identities), got {num_classes}")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))


class ArcFaceHead(MarginHead):
    """s * cos(theta + m) on the target class, s * cos(theta) elsewhere."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0,
                 margin: float = 0.5):
        super().__init__(embedding_size, num_classes)
        if not 0.0 <= margin < math.pi / 2:
            raise ConfigError(f"ArcFace margin={margin}; use 0 <= m < pi/2 (0.5 is the paper's)")
        self.scale, self.margin = float(scale), float(margin)
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.theta = math.cos(math.pi - margin)           # beyond it theta + m passes pi
        self.sinmm = math.sin(math.pi - margin) * margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = self.cosine(embeddings).clamp(-1.0, 1.0)
        target = cosine.gather(1, labels[:, None])
        sine = torch.sqrt((1.0 - target * target).clamp_min(0.0))
        with_margin = target * self.cos_m - sine * self.sin_m
        with_margin = torch.where(target > self.theta, with_margin, target - self.sinmm)
        return cosine.scatter(1, labels[:, None], with_margin) * self.scale


class AdaFaceHead(MarginHead):
    """AdaFace: margins scaled by the standardised embedding norm (image quality proxy)."""

    EPS = 1e-3

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0,
                 margin: float = 0.4, h: float = 0.333, t_alpha: float = 0.01):
        super().__init__(embedding_size, num_classes)
        if not 0.0 < t_alpha <= 1.0:
            raise ConfigError(f"AdaFace t_alpha={t_alpha}; the momentum must be in (0, 1]")
        self.scale, self.margin, self.h, self.t_alpha = float(scale), float(margin), float(h), float(t_alpha)
        self.register_buffer("batch_mean", torch.ones(1) * 20)
        self.register_buffer("batch_std", torch.ones(1) * 100)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = self.cosine(embeddings).clamp(-1 + self.EPS, 1 - self.EPS)
        safe_norms = embeddings.detach().float().norm(dim=1, keepdim=True).clamp(0.001, 100)
        if self.training:
            with torch.no_grad():
                std = safe_norms.std() if safe_norms.numel() > 1 else torch.zeros(())
                self.batch_mean.mul_(1 - self.t_alpha).add_(self.t_alpha * safe_norms.mean())
                self.batch_std.mul_(1 - self.t_alpha).add_(self.t_alpha * std)
        scaler = ((safe_norms - self.batch_mean) / (self.batch_std + self.EPS) * self.h).clamp(-1, 1)
        one_hot = torch.zeros_like(cosine).scatter_(1, labels[:, None], 1.0)
        theta = cosine.acos() + one_hot * (-self.margin * scaler)          # g_angular
        cosine = theta.clamp(self.EPS, math.pi - self.EPS).cos()
        cosine = cosine - one_hot * (self.margin + self.margin * scaler)   # g_additive
        return cosine * self.scale


def build_margin_head(name: str, embedding_size: int, num_classes: int, scale: float,
                      margin: float, adaface_h: float = 0.333,
                      adaface_t_alpha: float = 0.01) -> MarginHead:
    if name == "arcface":
        return ArcFaceHead(embedding_size, num_classes, scale, margin)
    if name == "adaface":
        return AdaFaceHead(embedding_size, num_classes, scale, margin, adaface_h, adaface_t_alpha)
    raise ConfigError(f"head: {name!r} is not a margin head; use one of {list(MARGIN_HEADS)}")


class OcclusionHead(nn.Module):
    """(N, C, h, w) feature map -> (N, 1, h, w) visibility logits (sigmoid > 0.5 = visible)."""

    def __init__(self, in_channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(8, in_channels // 4)
        self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False),
                                 nn.BatchNorm2d(hidden), nn.PReLU(hidden),
                                 nn.Conv2d(hidden, 1, 1))

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.net(feature_map)
