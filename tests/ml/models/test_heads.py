"""Margin heads (ArcFace, AdaFace) and the occlusion head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ml.errors import ConfigError
from ml.models.heads import AdaFaceHead, ArcFaceHead, OcclusionHead, build_margin_head


def test_arcface_adds_the_angular_margin_to_the_target_class_only():
    torch.manual_seed(0)
    head = ArcFaceHead(8, 5, scale=10.0, margin=0.5)
    emb, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    cosine = F.normalize(emb) @ F.normalize(head.weight).t()
    logits = head(emb, labels)
    theta = cosine.gather(1, labels[:, None]).clamp(-1, 1).acos()
    expected_target = torch.where(theta + 0.5 < math.pi, torch.cos(theta + 0.5),
                                  torch.cos(theta) - math.sin(math.pi - 0.5) * 0.5)
    torch.testing.assert_close(logits.gather(1, labels[:, None]), 10.0 * expected_target,
                               rtol=1e-5, atol=1e-5)
    others = torch.ones_like(logits, dtype=torch.bool).scatter_(1, labels[:, None], False)
    torch.testing.assert_close(logits[others], 10.0 * cosine[others])


def test_arcface_target_logit_falls_monotonically_past_pi():
    head = ArcFaceHead(2, 2, scale=1.0, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    angles = torch.linspace(0.1, math.pi - 0.01, 50)
    emb = torch.stack([angles.cos(), angles.sin()], 1)
    target = head(emb, torch.zeros(50, dtype=torch.long))[:, 0]
    assert torch.all(target[1:] < target[:-1])


def test_adaface_margin_depends_on_the_feature_norm():
    torch.manual_seed(0)
    head = AdaFaceHead(4, 3, scale=1.0, margin=0.4, h=0.333, t_alpha=1.0)
    direction = F.normalize(torch.randn(1, 4))
    emb = torch.cat([direction * 1.0, direction * 40.0])        # same angle, low and high norm
    labels = torch.tensor([0, 0])
    logits = head.train()(emb, labels)
    plain = (F.normalize(emb) @ F.normalize(head.weight).t())[:, 0]
    assert torch.all(logits[:, 0] < plain)                        # a margin on the target
    assert logits[0, 0] != logits[1, 0]                           # ... that depends on the norm
    assert head.batch_mean.item() == pytest.approx(20.5, rel=1e-4)   # t_alpha=1: this batch's mean
    torch.testing.assert_close(logits[:, 1:], (F.normalize(emb) @ F.normalize(head.weight).t())[:, 1:])


def test_heads_by_name_and_errors():
    assert isinstance(build_margin_head("adaface", 8, 4, 64.0, 0.4), AdaFaceHead)
    with pytest.raises(ConfigError, match="arcface"):
        build_margin_head("cosface", 8, 4, 64.0, 0.4)
    with pytest.raises(ConfigError, match="2 classes"):
        ArcFaceHead(8, 1)


def test_occlusion_head_predicts_one_logit_per_cell():
    logits = OcclusionHead(16)(torch.randn(2, 16, 7, 7))
    assert logits.shape == (2, 1, 7, 7)
