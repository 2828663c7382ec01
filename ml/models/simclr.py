"""SimCLR: a backbone, a projection head, and the NT-Xent (normalised temperature-scaled cross
entropy) loss over two views of each sample.

In temporal contrastive learning (seed 001) the two views of an anchor are two frames of the same
object sequence, each independently augmented. Other frames of the anchor's sequence that happen
to be in the batch are neither positives nor negatives when `groups` (the sequence of each
sample) is given: they are left out of the softmax's denominator, so a small dataset with few
sequences does not push frames of one object apart.

Under DDP the loss gathers every rank's projections (with gradients, torch.distributed.nn), so
negatives come from the global batch; every rank must hold the same number of samples.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """Linear-BN-ReLU-Linear, SimCLR's MLP head: features -> the space the loss compares in."""

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False),
                                 nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SimCLR(nn.Module):
    """backbone + projection head; `forward` gives projections, `features` the backbone output
    (what downstream tasks and the kNN evaluation use)."""

    def __init__(self, backbone: nn.Module, hidden_dim: int = 256, out_dim: int = 64):
        super().__init__()
        self.backbone = backbone
        self.projector = ProjectionHead(backbone.feature_dim, hidden_dim, out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))


def _gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_gather
        return torch.cat(all_gather(x.contiguous()))
    return x


def _gather(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)
    return x


def nt_xent_loss(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.2,
                 groups: torch.Tensor | None = None) -> torch.Tensor:
    """NT-Xent over the 2N views of N pairs (z_a[i], z_b[i]), averaged over this rank's views.

    Each view's positive is its pair's other view; every other view of the (global) batch is a
    negative, except views whose `groups` entry equals its own (left out of the denominator).
    """
    n = z_a.shape[0]
    if z_b.shape[0] != n or n == 0:
        raise ValueError(f"nt_xent_loss: views of different or zero length ({n}, {z_b.shape[0]})")
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    local = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)                 # (2n, d)
    keys_a = _gather_with_grad(F.normalize(z_a.float(), dim=1))               # (N, d)
    keys_b = _gather_with_grad(F.normalize(z_b.float(), dim=1))
    total = keys_a.shape[0]
    keys = torch.cat([keys_a, keys_b])                                        # (2N, d)
    logits = local @ keys.T / temperature                                     # (2n, 2N)

    mine = torch.arange(n, device=local.device) + rank * n                    # global pair ids
    self_col = torch.cat([mine, mine + total])
    positive_col = torch.cat([mine + total, mine])
    rows = torch.arange(2 * n, device=local.device)
    excluded = torch.zeros_like(logits, dtype=torch.bool)
    excluded[rows, self_col] = True
    if groups is not None:
        all_groups = _gather(groups.to(local.device))
        key_groups = torch.cat([all_groups, all_groups])
        query_groups = torch.cat([groups, groups]).to(local.device)
        excluded |= query_groups[:, None] == key_groups[None, :]
        excluded[rows, positive_col] = False
    logits = logits.masked_fill(excluded, float("-inf"))
    return F.cross_entropy(logits, positive_col)
