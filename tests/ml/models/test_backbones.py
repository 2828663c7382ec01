"""Backbones by name: every one maps images to `feature_dim` features, from random weights."""

from __future__ import annotations

import pytest
import torch

from ml.errors import ConfigError
from ml.models.backbones import build_backbone
from ml.models.classifier import ImageClassifier


@pytest.mark.parametrize("name, dim", [("small_cnn", 64), ("vgg16", 512), ("resnet18", 512),
                                       ("vit", 32)])
def test_backbones_give_feature_vectors(name, dim):
    torch.manual_seed(0)
    net = build_backbone(name, 32, widths=[16, 32, 64], patch_size=8, vit_dim=32, vit_depth=1,
                         vit_heads=2).eval()
    with torch.no_grad():
        features = net(torch.randn(2, 3, 32, 32))
    assert net.feature_dim == dim and features.shape == (2, dim)
    logits = ImageClassifier(net, num_classes=5)(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 5)


def test_unknown_backbone_and_bad_vit_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="vgg19.*small_cnn"):
        build_backbone("vgg19", 64)
    with pytest.raises(ConfigError, match="60 is not a multiple of the patch size 8; use 56 or 64"):
        build_backbone("vit", 60)
    vit = build_backbone("vit", 32, vit_dim=32, vit_depth=1, vit_heads=2)
    with pytest.raises(ConfigError, match="32x32.*64x64"):
        vit(torch.zeros(1, 3, 64, 64))
