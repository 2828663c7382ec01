"""A small Vision Transformer (ViT): patch embedding, a class token, learned position
embeddings and pre-norm transformer encoder layers; the class token's final state is the feature.

Seed 003 pads (letterboxes) images rather than cropping them, expecting a ViT to learn to ignore
the padded patches through attention and its position embeddings; this is that model at a size
that trains on a CPU. The image side must be a multiple of the patch size (a ConfigError names
the nearest sizes otherwise).
"""

from __future__ import annotations

import torch
from torch import nn

from ml.errors import ConfigError


class VisionTransformer(nn.Module):
    """(N, 3, S, S) -> (N, dim): the class token after `depth` encoder layers and a LayerNorm."""

    def __init__(self, image_size: int = 64, patch_size: int = 8, dim: int = 128, depth: int = 4,
                 heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 in_channels: int = 3):
        super().__init__()
        if image_size < patch_size or image_size % patch_size:
            below = max(patch_size, image_size // patch_size * patch_size)
            raise ConfigError(f"ViT: image size {image_size} is not a multiple of the patch size "
                              f"{patch_size}; use {below} or {below + patch_size}")
        if dim % heads:
            raise ConfigError(f"ViT: dim {dim} is not divisible by heads {heads}")
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        patches = (image_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.feature_dim = dim
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ConfigError(f"ViT built for {self.image_size}x{self.image_size} images got "
                              f"{x.shape[-1]}x{x.shape[-2]}; resize the input or rebuild the model")
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)          # (N, P, dim)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return self.norm(self.encoder(tokens)[:, 0])
