"""iResNet backbones (insightface's architecture) and the FaceModel around them."""

from __future__ import annotations

import pytest
import torch

from ml.errors import ConfigError
from ml.models.face_model import build_face_model
from ml.models.iresnet import IResNet, iresnet


def test_iresnet50_has_insightfaces_size_and_state_dict_names():
    net = iresnet("iresnet50")
    assert sum(p.numel() for p in net.parameters()) == 43_590_848       # insightface r50: 43.59 M
    keys = net.state_dict().keys()
    for key in ("conv1.weight", "prelu.weight", "layer1.0.bn1.weight", "layer1.0.downsample.0.weight",
                "layer3.13.conv2.weight", "layer4.2.bn3.running_var", "bn2.weight", "fc.weight",
                "features.running_mean"):
        assert key in keys
    assert "layer3.14.conv1.weight" not in keys                          # [3, 4, 14, 3] blocks
    assert not net.features.weight.requires_grad                         # frozen BN scale, as insightface


def test_small_backbone_maps_112_faces_to_a_7x7_map_and_an_embedding():
    torch.manual_seed(0)
    net = iresnet("iresnet_small", num_features=128).eval()
    x = torch.randn(3, 3, 112, 112)
    feature_map = net.forward_features(x)
    assert feature_map.shape == (3, 64, 7, 7)
    torch.testing.assert_close(net(x), net.forward_embedding(feature_map))
    assert net(x).shape == (3, 128)


def test_face_model_returns_occlusion_logits_on_the_feature_grid():
    model = build_face_model("iresnet_small", 32, occlusion_head=True, mask_features=True).eval()
    embedding, logits = model(torch.randn(2, 3, 112, 112))
    assert embedding.shape == (2, 32) and logits.shape == (2, 1, 7, 7)
    plain = build_face_model("iresnet_small", 32, occlusion_head=False)
    assert plain(torch.randn(2, 3, 112, 112))[1] is None
    assert plain.embed(torch.randn(2, 3, 112, 112)).shape == (2, 32)


def test_bad_shapes_are_config_errors():
    with pytest.raises(ConfigError, match="not an iResNet preset"):
        iresnet("resnet9000")
    with pytest.raises(ConfigError, match="multiple of"):
        IResNet((1, 1, 1), (8, 16, 32), input_size=100, stem_stride=2)
    with pytest.raises(ConfigError, match="one entry"):
        IResNet((1, 1), (8, 16, 32))
