"""Feature extractors by name: (N, 3, H, W) images -> (N, feature_dim) vectors.

- `small_cnn`: ml.models.small_cnn.SmallCNN, the CPU-demo backbone (option: widths).
- `vgg16`, `vgg16_bn`: torchvision's VGG16 convolutional layers (seed 001's backbone) followed by
  a global average pool (512 features) instead of the 4096-wide ImageNet classifier.
- `resnet18`, `resnet34`, `resnet50`: torchvision's ResNets with the classifier removed.
- `vit`: ml.models.vit.VisionTransformer (options: patch_size, vit_dim, vit_depth, vit_heads).

Every network starts from random weights: nothing is downloaded (the trainers learn from the
project's own data, and the machines that run them may be offline).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
import torchvision.transforms as T
from torch import nn

from ml.errors import ConfigError
from ml.models.small_cnn import SmallCNN
from ml.models.vit import VisionTransformer

BACKBONES = ("small_cnn", "vgg16", "vgg16_bn", "resnet18", "resnet34", "resnet50", "vit")
SMALL_CNN_WIDTHS = (32, 64, 128, 256)
# The input normalisation the trainers give every backbone (torchvision's convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def input_transform(image_size: int) -> T.Compose:
    """A PIL image -> the normalised (3, image_size, image_size) tensor a backbone takes."""
    return T.Compose([T.Resize((image_size, image_size), antialias=True), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class VGGFeatures(nn.Module):
    """A torchvision VGG's convolutional part and a global average pool -> 512 features."""

    def __init__(self, name: str = "vgg16"):
        super().__init__()
        self.features = getattr(torchvision.models, name)(weights=None).features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


class ResNetFeatures(nn.Module):
    """A torchvision ResNet up to its global average pool (512 or 2048 features)."""

    def __init__(self, name: str = "resnet18"):
        super().__init__()
        net = getattr(torchvision.models, name)(weights=None)
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_backbone(name: str, image_size: int, *, widths: Sequence[int] = SMALL_CNN_WIDTHS,
                   patch_size: int = 8, vit_dim: int = 128, vit_depth: int = 4,
                   vit_heads: int = 4) -> nn.Module:
    """The backbone `name` (see BACKBONES) for square images of `image_size`; the module has a
    `feature_dim` attribute. `widths` shape the small CNN, `patch_size` and `vit_*` the ViT;
    the torchvision networks ignore them."""
    if name == "small_cnn":
        return SmallCNN(widths)
    if name == "vit":
        return VisionTransformer(image_size=image_size, patch_size=patch_size, dim=vit_dim,
                                 depth=vit_depth, heads=vit_heads)
    if name in ("vgg16", "vgg16_bn"):
        return VGGFeatures(name)
    if name in ("resnet18", "resnet34", "resnet50"):
        return ResNetFeatures(name)
    raise ConfigError(f"backbone {name!r} is not known; use one of {', '.join(BACKBONES)}")
