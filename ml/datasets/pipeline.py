"""The per-item image pipeline of ml.datasets.

A dataset's item is a named tuple (ml/items.py): `Item(image, label)`, or
`MaskedItem(image, label, mask)` when the transform returns an `(image, mask)` pair (seed 002's
occlusion transforms).

The pipeline runs seed 002's steps in seed 002's order: decoded RGB PIL image -> optional
RGB->BGR swap (for backbones trained on OpenCV/BGR input) -> Augmenter -> transform.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

from ml.augmenter import Augmenter
from ml.errors import ConfigError
from ml.imageio import load_rgb, plain_jpeg_size
from ml.items import Item, MaskedItem, make_item

Transform = Callable[[Any], Any]


def swap_rgb_bgr(image: Image.Image) -> Image.Image:
    """The image with its first and last channels exchanged (RGB <-> BGR)."""
    return Image.fromarray(np.ascontiguousarray(np.asarray(image)[:, :, ::-1]))


def decode_bytes(data: bytes | bytearray | memoryview | np.ndarray, name: str) -> Image.Image:
    """Encoded image bytes (or a uint8 array of them) -> RGB PIL image; ImageError naming `name`.

    Plain JPEGs (no EXIF block, YCbCr or grayscale, within the pixel limit) are decoded by
    simplejpeg, the same libjpeg-turbo decoder and settings as Pillow (identical pixels) without
    Pillow's Python-level header parsing: about 40% less time for a 112x112 face. Everything
    else, and every JPEG simplejpeg refuses (truncated, corrupt), goes through
    ml.imageio.load_rgb, which applies EXIF orientation, converts CMYK and any other mode, and
    raises the ImageError that says what is wrong.
    """
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    fast = decode_plain_jpeg(data)
    return fast if fast is not None else load_rgb(data, name=name)


def decode_plain_jpeg(data: bytes | bytearray | memoryview) -> Image.Image | None:
    """The RGB image of a plain JPEG through simplejpeg; None when load_rgb must decide."""
    size = plain_jpeg_size(data)
    if size is None:
        return None
    width, height = size
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return None
    return Image.frombuffer("RGB", (width, height), pixels, "raw", "RGB", 0, 1)


@dataclass
class ImagePipeline:
    """swap_color_channel, then augmenter, then transform: what a dataset does to each image."""

    transform: Transform | None = None
    swap_color_channel: bool = False
    augmenter: Augmenter | None = None

    def __call__(self, image: Image.Image) -> Any:
        """The transformed image (or `(image, mask)` when the transform yields a mask)."""
        if self.swap_color_channel:
            image = swap_rgb_bgr(image)
        if self.augmenter is not None:
            image = self.augmenter(image)
        return self.transform(image) if self.transform is not None else image

    def item(self, image: Image.Image, label: Any) -> Item | MaskedItem:
        """The item of a decoded image and its label (ml.items.make_item)."""
        return make_item(self(image), label)


def source_path(source: Any, handle_type: type, attribute: str) -> Path:
    """The path a dataset reads: `getattr(handle, attribute)` for a handle, else `source` itself."""
    if isinstance(source, handle_type):
        return Path(getattr(source, attribute))
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    raise ConfigError(f"expected a {handle_type.__name__} or a path, got {type(source).__name__} "
                      f"{source!r}")
