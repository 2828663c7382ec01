"""Per-image quality signals, computed on the image verification already decodes.

Verification at level `decode` decodes every image (JPEGs through the DCT draft); `decode_size`
is the draft that keeps at least WORK_SIDE pixels a side, and `image_signals` reads from that
decoded image, never from a second pass over the file:

| column | what | cleanvision's property |
| --- | --- | --- |
| phash | 64-bit perceptual hash: DCT of the 32x32 grey image, the 8x8 lowest frequencies against their median (imagehash.phash's bits) | near_duplicates (phash, hash_size 8) |
| brightness_p99, brightness_p5 | percentiles of the perceived brightness sqrt(0.241 R^2 + 0.691 G^2 + 0.068 B^2) / 255 | dark, light |
| blurriness, grayscale_std | standard deviation of the edge image (FIND_EDGES, without the 1-pixel border Pillow leaves unfiltered, which cleanvision counts) of the grey image, and of its histogram | blurry |
| entropy | Shannon entropy of the image's histogram (bits) | low_information |
| grayscale | every pixel's channels within GREY_TOLERANCE of each other (cleanvision only looks at the file's mode, so a grey photo saved as RGB is missed) | grayscale |

Any mode (grey, 16-bit, CMYK, palette, alpha, animated: the first frame) is read through
ml.imageio.to_rgb. An image smaller than MIN_HASH_SIDE on a side gets no phash (NULL), and is
reported as such, never an exception.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from ml.imageio import to_rgb

WORK_SIDE = 64             # signals read an at most WORK_SIDE x WORK_SIDE copy (cleanvision's
                           # MAX_RESOLUTION_FOR_BLURRY_DETECTION; it reads the others at full size)
DRAFT_SIDE = 128           # the JPEG draft verification decodes at when it computes signals
HASH_SIDE = 32             # the grey image the DCT is taken of (imagehash: hash_size * 4)
HASH_BITS_SIDE = 8         # 8 x 8 lowest frequencies: 64 bits
MIN_HASH_SIDE = 8          # smaller images get no perceptual hash
GREY_TOLERANCE = 6         # channel spread (0..255) still counted as grey: JPEG chroma noise

SIGNAL_COLUMNS = ("phash", "brightness_p99", "brightness_p5", "blurriness", "grayscale_std",
                  "entropy", "grayscale")


def _dct_matrix(n: int) -> np.ndarray:
    """Unnormalised DCT-II (scipy.fftpack.dct's, which imagehash uses): C[k, i] = 2 cos(pi k (2i+1) / 2n)."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT = _dct_matrix(HASH_SIDE)[:HASH_BITS_SIDE]          # only the rows of the low frequencies
_BIT_WEIGHTS = (np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64))


@dataclass(frozen=True)
class Signals:
    phash: int | None
    brightness_p99: float
    brightness_p5: float
    blurriness: float
    grayscale_std: float
    entropy: float
    grayscale: bool

    def as_tuple(self) -> tuple:
        return astuple(self)


def decode_size() -> tuple[int, int]:
    """The JPEG draft verification decodes at when it also computes signals."""
    return (DRAFT_SIDE, DRAFT_SIDE)


def perceptual_hash(grey: Image.Image) -> int | None:
    """imagehash.phash(image, hash_size=8)'s bits as a 64-bit integer (bit 63 first), from a
    bilinear 32 x 32 copy of the (already reduced) grey image; None for an image smaller than
    MIN_HASH_SIDE on a side."""
    if min(grey.size) < MIN_HASH_SIDE:
        return None
    pixels = np.asarray(grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BILINEAR),
                        dtype=np.float64)
    low = _DCT @ pixels @ _DCT.T                          # 8 x 8
    bits = (low > np.median(low)).ravel()
    return int(np.sum(_BIT_WEIGHTS[bits], dtype=np.uint64))


def image_signals(image: Image.Image) -> Signals:
    """The signals of one decoded image (any mode), read from a copy of at most WORK_SIDE
    pixels a side made by whole-pixel box averaging (Image.reduce)."""
    rgb = to_rgb(image)
    factor = -(-max(rgb.size) // WORK_SIDE)
    work = rgb.reduce(factor) if factor > 1 else rgb
    pixels = np.asarray(work)
    channels = pixels.astype(np.float32)
    r, g, b = channels[..., 0], channels[..., 1], channels[..., 2]
    brightness = np.sqrt(0.241 * r * r + 0.691 * g * g + 0.068 * b * b).ravel() / 255.0
    n = brightness.size
    low, high = int(0.05 * (n - 1)), int(0.99 * (n - 1))
    p5, p99 = np.partition(brightness, [low, high])[[low, high]]
    spread = np.maximum(np.abs(r - g), np.abs(g - b))
    grey = work.convert("L")
    edges = np.asarray(grey.filter(ImageFilter.FIND_EDGES))[1:-1, 1:-1]    # Pillow leaves
    # the 1-pixel border unfiltered (the image's own values): cleanvision counts it, and on a
    # 64 px image it outweighs the edges of a smooth picture
    return Signals(
        phash=perceptual_hash(grey),
        brightness_p99=float(p99), brightness_p5=float(p5),
        blurriness=float(np.std(edges, dtype=np.float64)) if edges.size else 0.0,
        grayscale_std=float(np.std(grey.histogram())),
        entropy=float(work.entropy()),
        grayscale=bool(np.count_nonzero(spread > GREY_TOLERANCE) <= 0.01 * n),
    )


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between 64-bit hashes, element-wise."""
    return np.bitwise_count(np.bitwise_xor(a.astype(np.uint64), b.astype(np.uint64)))


class SignalColumns:
    """Signals of n rows, filled by position as decode workers return them; rows without
    signals (not decoded, corrupt, no hash) read as NULL."""

    def __init__(self, n: int):
        self.phash = np.zeros(n, dtype=np.uint64)
        self.hashed = np.zeros(n, dtype=bool)
        self.measured = np.zeros(n, dtype=bool)
        self.values = {name: np.full(n, np.nan, dtype=np.float32) for name in SIGNAL_COLUMNS[1:-1]}
        self.grayscale = np.zeros(n, dtype=bool)

    def put(self, pos: int, signals: Signals) -> None:
        self.measured[pos] = True
        if signals.phash is not None:
            self.phash[pos] = np.uint64(signals.phash)
            self.hashed[pos] = True
        for name, column in self.values.items():
            column[pos] = getattr(signals, name)
        self.grayscale[pos] = signals.grayscale

    def columns(self) -> dict[str, pd.Series]:
        """The signal columns, in SIGNAL_COLUMNS order (nullable: phash UInt64, grayscale
        boolean; floats NaN where not measured)."""
        phash = pd.arrays.IntegerArray(self.phash, ~self.hashed)
        grey = pd.arrays.BooleanArray(self.grayscale, ~self.measured)
        return {"phash": pd.Series(phash), **{k: pd.Series(v) for k, v in self.values.items()},
                "grayscale": pd.Series(grey)}
