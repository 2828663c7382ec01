"""FaceModel: an iResNet backbone with an optional occlusion head, as the face trainer uses it.

forward(images) -> (embedding, occlusion logits or None). The occlusion head reads the
backbone's last feature map (7x7 for 112x112 faces) and predicts which cells are visible; with
`mask_features` the map is multiplied by the predicted visibility before the output layer, so
occluded regions (a surgical mask over nose and mouth) weigh less in the embedding. `embed`
returns the embedding alone (evaluation, export).
"""

from __future__ import annotations

import torch
from torch import nn

from ml.models.heads import OcclusionHead
from ml.models.iresnet import IResNet, iresnet


class FaceModel(nn.Module):
    def __init__(self, backbone: IResNet, occlusion_head: bool = True, mask_features: bool = False):
        super().__init__()
        self.backbone = backbone
        self.occlusion = OcclusionHead(backbone.map_channels) if occlusion_head else None
        self.mask_features = bool(mask_features and occlusion_head)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        feature_map = self.backbone.forward_features(images)
        logits = self.occlusion(feature_map) if self.occlusion is not None else None
        if self.mask_features:
            feature_map = feature_map * torch.sigmoid(logits)
        return self.backbone.forward_embedding(feature_map), logits

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)[0]


def build_face_model(backbone: str, embedding_size: int, dropout: float = 0.0,
                     input_size: int = 112, occlusion_head: bool = True,
                     mask_features: bool = False) -> FaceModel:
    """A FaceModel over the iResNet preset `backbone` (ml.models.iresnet.IRESNET_PRESETS)."""
    net = iresnet(backbone, num_features=embedding_size, dropout=dropout, input_size=input_size)
    return FaceModel(net, occlusion_head=occlusion_head, mask_features=mask_features)
