"""A small U-Net for image-to-image work (seed 004's before -> after), with the safe-dimensions
rule enforced.

`depth` 2x poolings on the way down and as many 2x upsamplings on the way up, with skip
connections between levels of equal size. Every level must have integer sides, so the input's
width and height must be divisible by 2**depth (seed 004's "safe dimensions"): an unsafe size is
a ConfigError naming the size, the depth and the nearest safe size, raised before any work
(`check_input_size`) and again by `forward` for tensors of another size.

With `residual=True` (the default) the network predicts a correction added to its input and its
last layer starts at zero, so an untrained U-Net is exactly the identity mapping; training has to
move it away from there to do better than "output = input".
"""

from __future__ import annotations

import torch
from torch import nn

from ml.errors import ConfigError
from ml.resize import check_safe_dimensions, round_to_safe


def check_input_size(width: int, height: int, depth: int) -> None:
    """ConfigError unless width and height are divisible by 2**depth."""
    problems = check_safe_dimensions(width, height, depth)
    if problems:
        safe = f"{round_to_safe(width, depth)}x{round_to_safe(height, depth)}"
        raise ConfigError(f"U-Net depth {depth} needs width and height divisible by "
                          f"2**{depth} = {2 ** depth}; input size {width}x{height} is not safe "
                          f"({'; '.join(problems)}). Nearest safe size: {safe}: resize to it "
                          f"(resize pool_depth: {depth}), or use a smaller depth")


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """(N, in_channels, H, W) -> (N, out_channels, H, W); H and W divisible by 2**depth.

    Level k (0..depth) has base * 2**k channels; downsampling is 2x max pooling, upsampling a
    2x2 transposed convolution, and the decoder concatenates the encoder's output of the same
    level (the skip connection).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, base: int = 16,
                 depth: int = 4, residual: bool = True):
        super().__init__()
        if depth < 1 or base < 1:
            raise ConfigError(f"U-Net: depth {depth} and base {base} must be at least 1")
        if residual and in_channels != out_channels:
            raise ConfigError("U-Net: residual=True adds the input to the output, so it needs "
                              f"in_channels == out_channels (got {in_channels}, {out_channels})")
        self.depth = int(depth)
        self.residual = bool(residual)
        widths = [base * 2 ** k for k in range(depth + 1)]
        self.down = nn.ModuleList([double_conv(in_channels, widths[0])] +
                                  [double_conv(widths[k - 1], widths[k])
                                   for k in range(1, depth + 1)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[k + 1], widths[k], 2, stride=2)
                                 for k in reversed(range(depth))])
        self.merge = nn.ModuleList([double_conv(2 * widths[k], widths[k])
                                    for k in reversed(range(depth))])
        self.out = nn.Conv2d(widths[0], out_channels, 1)
        if residual:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(int(x.shape[-1]), int(x.shape[-2]), self.depth)
        skips = []
        h = x
        for k, block in enumerate(self.down):
            h = block(h if k == 0 else self.pool(h))
            skips.append(h)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            h = merge(torch.cat([up(h), skip], dim=1))
        h = self.out(h)
        return x + h if self.residual else h
