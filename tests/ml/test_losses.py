"""Batch-hard triplet loss and the occlusion loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ml.losses import batch_hard_triplet_loss, occlusion_loss


def test_batch_hard_triplet_uses_farthest_positive_and_nearest_negative():
    # 2-D unit vectors at known angles: identity 0 at 0 and 60 degrees, identity 1 at 90 and 180
    angles = torch.tensor([0.0, 60.0, 90.0, 180.0]).deg2rad()
    emb = torch.stack([angles.cos(), angles.sin()], 1) * 3.0    # norms do not matter
    labels = torch.tensor([0, 0, 1, 1])
    d = lambda a, b: 2 - 2 * torch.cos((a - b).deg2rad())      # squared distance of unit vectors
    expected = torch.stack([
        F.relu(d(torch.tensor(0.0), torch.tensor(60.0)) - d(torch.tensor(0.0), torch.tensor(90.0)) + 0.3),
        F.relu(d(torch.tensor(60.0), torch.tensor(0.0)) - d(torch.tensor(60.0), torch.tensor(90.0)) + 0.3),
        F.relu(d(torch.tensor(90.0), torch.tensor(180.0)) - d(torch.tensor(90.0), torch.tensor(60.0)) + 0.3),
        F.relu(d(torch.tensor(180.0), torch.tensor(90.0)) - d(torch.tensor(180.0), torch.tensor(60.0)) + 0.3),
    ]).mean()
    assert batch_hard_triplet_loss(emb, labels, 0.3).item() == pytest.approx(expected.item(), abs=1e-5)


def test_triplet_is_zero_when_identities_are_well_apart_and_skips_lonely_anchors():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])                       # identity 2 has no positive
    assert batch_hard_triplet_loss(emb, labels, 0.3).item() == pytest.approx(0.0, abs=1e-6)
    emb.requires_grad_(True)
    loss = batch_hard_triplet_loss(emb, torch.tensor([0, 1, 2, 3, 4]), 0.3)
    loss.backward()                                              # no positives at all: 0, still differentiable
    assert loss.item() == 0.0


def test_occlusion_loss_targets_the_visible_fraction_of_each_cell():
    mask = torch.ones(1, 1, 14, 14)
    mask[..., 7:, :] = 0.0                                       # bottom half occluded
    mask[..., 6:8, 0:2] = 0.5
    logits_good = torch.full((1, 1, 7, 7), 8.0)
    logits_good[..., 4:, :] = -8.0
    target = F.adaptive_avg_pool2d(mask, (7, 7))
    expected = F.binary_cross_entropy_with_logits(logits_good, target)
    assert occlusion_loss(logits_good, mask).item() == pytest.approx(expected.item())
    assert occlusion_loss(logits_good, mask) < occlusion_loss(-logits_good, mask)
