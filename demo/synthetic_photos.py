"""Deterministic photo-like JPEGs for benchmarks: smooth gradients, soft shapes, texture and noise.

Flat synthetic images flatter a resizer (anything looks perfect on a flat colour); these have
real high-frequency content so PSNR and decode costs are meaningful.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.empty((height, width, 3), np.float32)
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        base[..., c] = 128 + 60 * np.sin(a * xx / width * 6 + p) * np.cos(b * yy / height * 6 - p)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 40, width // 5)), int(rng.integers(height // 40, height // 5))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(radius=2))
    arr = np.asarray(img).astype(np.int16)
    arr += rng.normal(0, 6, arr.shape).astype(np.int16)  # sensor-like noise / texture
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def write_photo_jpegs(folder: Path, n: int, width: int = 1920, height: int = 1280,
                      quality: int = 90, seed: int = 0) -> list[Path]:
    """Write n photo-like JPEGs (idempotent: existing files of the right name are kept)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"photo_{i:05d}.jpg"
        if not p.exists():
            photo_like(width, height, seed + i).save(p, "JPEG", quality=quality)
        paths.append(p)
    return paths
