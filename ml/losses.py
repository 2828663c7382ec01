"""Auxiliary face-training losses (the margin classifiers are in ml.models.heads).

- batch_hard_triplet_loss (Hermans et al. 2017, "In Defense of the Triplet Loss"): over a
  P x K batch (ml.samplers.RandomIdentitySampler), each anchor's farthest positive and nearest
  negative, hinge with a margin, on L2-normalised embeddings (squared distances in 0..4, the
  scale the verification protocol thresholds).
- occlusion_loss: binary cross-entropy between the occlusion head's visibility logits and the
  transforms' mask (1 visible, 0 occluded), the mask average-pooled to the logits' grid so a
  cell's target is the fraction of it that is visible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor,
                            margin: float = 0.3) -> torch.Tensor:
    """Mean over anchors of max(0, d(a, hardest positive) - d(a, hardest negative) + margin).

    Anchors without a positive or a negative in the batch are left out (0 when none is left).
    """
    e = F.normalize(embeddings.float(), dim=1)
    dist = (2.0 - 2.0 * e @ e.t()).clamp_min(0.0)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & ~eye, ~same
    hardest_positive = dist.masked_fill(~positive, float("-inf")).amax(dim=1)
    hardest_negative = dist.masked_fill(~negative, float("inf")).amin(dim=1)
    usable = positive.any(dim=1) & negative.any(dim=1)
    if not usable.any():
        return dist.sum() * 0.0
    losses = F.relu(hardest_positive - hardest_negative + margin)
    return losses[usable].mean()


def occlusion_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE of visibility logits (N, 1, h, w) against a mask (N, 1, H, W) in 0..1, pooled to h x w."""
    target = mask.float()
    if target.ndim == 3:
        target = target[:, None]
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.adaptive_avg_pool2d(target, logits.shape[-2:])
    return F.binary_cross_entropy_with_logits(logits.float(), target.clamp(0.0, 1.0))
