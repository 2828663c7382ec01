"""iResNet: the face-recognition ResNet of insightface's arcface_torch (backbones/iresnet.py).

The same layers, order and initialisation as insightface, so the state_dict keys of an
`iresnet50` / `iresnet100` match arcface_torch's (conv1, bn1, prelu, layer1..4, bn2, fc,
features):

- stem: conv3x3 (stride 1 on 112x112) - BN - PReLU;
- stages of IBasicBlock: BN - conv3x3 - BN - PReLU - conv3x3 (stride on the second conv) - BN,
  plus the (1x1 conv - BN) shortcut when the shape changes; every stage halves the map;
- output layer: BN - flatten the 7x7 map (the spatial layout is kept, no pooling) - dropout -
  fully connected to the embedding - BatchNorm1d whose scale is frozen at 1.

Two generalisations, off for the insightface presets: `stem_stride` (2 halves the image before
the first stage) and any number of stages with their own widths. `iresnet_small` uses both: a
three-stage, narrow network (widths 16/32/64, 0.48 M parameters) for the CPU demo with the same
block and output layer: 22 M multiply-adds per 112x112 image against iresnet50's 6.3 G
(43.6 M parameters, as insightface's r50).

`forward_features` returns the last stage's map (N, C, 7, 7) for 112x112 input, which the
occlusion head (ml.models.heads.OcclusionHead) reads; `forward_embedding` turns a map into the
embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ml.errors import ConfigError

# name -> (blocks per stage, stage widths, stem stride)
IRESNET_PRESETS: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    "iresnet_small": ((1, 1, 1), (16, 32, 64), 2),
    "iresnet18": ((2, 2, 2, 2), (64, 128, 256, 512), 1),
    "iresnet34": ((3, 4, 6, 3), (64, 128, 256, 512), 1),
    "iresnet50": ((3, 4, 14, 3), (64, 128, 256, 512), 1),
    "iresnet100": ((3, 13, 30, 3), (64, 128, 256, 512), 1),
    "iresnet200": ((6, 26, 60, 6), (64, 128, 256, 512), 1),
}
BN_EPS = 1e-5


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class IBasicBlock(nn.Module):
    """BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus the shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=BN_EPS)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + identity


class IResNet(nn.Module):
    """(N, 3, S, S) normalised faces -> (N, num_features) embeddings (not L2-normalised)."""

    def __init__(self, layers: Sequence[int] = (3, 4, 14, 3),
                 widths: Sequence[int] = (64, 128, 256, 512), num_features: int = 512,
                 dropout: float = 0.0, input_size: int = 112, stem_stride: int = 1):
        super().__init__()
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ConfigError(f"IResNet: layers={list(layers)} and widths={list(widths)} must "
                              "have one entry (>= 1 block) per stage")
        reduction = stem_stride * 2 ** len(layers)
        if input_size % reduction:
            raise ConfigError(f"IResNet: input_size={input_size} is not a multiple of "
                              f"{reduction} (stem stride {stem_stride} x 2 per stage); use 112 "
                              "for 4 stages at stride 1 or 3 stages at stride 2")
        self.map_size = input_size // reduction
        self.map_channels = int(widths[-1])
        self.inplanes = int(widths[0])
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=stem_stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=BN_EPS)
        self.prelu = nn.PReLU(self.inplanes)
        for i, (blocks, width) in enumerate(zip(layers, widths), start=1):
            setattr(self, f"layer{i}", self._make_layer(int(width), int(blocks)))
        self.num_stages = len(layers)
        self.bn2 = nn.BatchNorm2d(self.map_channels, eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(self.map_channels * self.map_size ** 2, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=BN_EPS)
        self.num_features = int(num_features)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 2) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride),
                                       nn.BatchNorm2d(planes, eps=BN_EPS))
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, map_channels, map_size, map_size)."""
        x = self.prelu(self.bn1(self.conv1(x)))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def forward_embedding(self, feature_map: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.bn2(feature_map), 1))
        with torch.autocast(device_type=x.device.type, enabled=False):   # fc in fp32, as insightface
            return self.features(self.fc(x.float()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_embedding(self.forward_features(x))


def iresnet(name: str, num_features: int = 512, dropout: float = 0.0,
            input_size: int = 112) -> IResNet:
    """A preset of IRESNET_PRESETS by name."""
    if name not in IRESNET_PRESETS:
        raise ConfigError(f"backbone {name!r} is not an iResNet preset; use one of "
                          f"{sorted(IRESNET_PRESETS)}")
    layers, widths, stem_stride = IRESNET_PRESETS[name]
    return IResNet(layers, widths, num_features=num_features, dropout=dropout,
                   input_size=input_size, stem_stride=stem_stride)
