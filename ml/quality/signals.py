"""Per-image quality signals, computed on the image verification already decodes.

Verification at level `decode` decodes every image (JPEGs through the DCT draft, whose longer
side stays at least DRAFT_SIDE when signals are asked), and `image_signals` reads from that
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
DRAFT_SIDE = 64            # verification's JPEG draft keeps at least this longer side when it
                           # computes signals: the 1/8 scale it uses anyway from 512 px up
HASH_SIDE = 32             # the grey image the DCT is taken of (imagehash: hash_size * 4)
HASH_BITS_SIDE = 8         # 8 x 8 lowest frequencies: 64 bits
MIN_HASH_SIDE = 8          # smaller images get no perceptual hash
HISTOGRAM_PIXELS = 64 * 48  # the spread of a histogram grows with its pixels: counted as if the
                           # image had cleanvision's 64 x 48 (its blurry thresholds assume it)
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


def perceptual_hash(grey: Image.Image) -> int | None:
    """imagehash.phash(image, hash_size=8)'s bits as a 64-bit integer (bit 63 first), from a
    bilinear 32 x 32 copy of the (already reduced) grey image; None for an image smaller than
    MIN_HASH_SIDE on a side."""
    if min(grey.size) < MIN_HASH_SIDE:
        return None
    pixels = np.asarray(grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BILINEAR),
                        dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T).ravel()                # 8 x 8
    ordered = np.sort(low)
    bits = low > (ordered[31] + ordered[32]) / 2          # above the median
    return int(np.sum(_BIT_WEIGHTS[bits], dtype=np.uint64))


_FIND_EDGES = ImageFilter.FIND_EDGES()      # built once: Pillow makes the kernel per instance
_BRIGHTNESS_WEIGHTS = np.array([0.241, 0.691, 0.068], dtype=np.float32)


def _std(values: np.ndarray) -> float:
    """Population standard deviation by two dot products (np.std costs more than the work on
    the few thousand values a signal reads)."""
    v = values.astype(np.float64).ravel()
    n = v.size
    if n == 0:
        return 0.0
    mean = v.sum() / n
    return float(np.sqrt(max(np.dot(v, v) / n - mean * mean, 0.0)))


def edge_spread(grey: Image.Image) -> float:
    """Standard deviation of Pillow's FIND_EDGES over the interior pixels: the filter leaves
    its 1-pixel border unfiltered (the image's own values), which cleanvision counts and
    which, on a 64 px image, outweighs the edges of a smooth picture."""
    if min(grey.size) < 3:
        return 0.0
    return _std(np.asarray(grey.filter(_FIND_EDGES))[1:-1, 1:-1])


def _working_copy(rgb: Image.Image) -> Image.Image:
    """The image reduced by whole-pixel box averaging to WORK_SIDE..2 x WORK_SIDE pixels on
    its longer side (box averaging keeps the edges a blur measure reads; an interpolating
    resize softens them); a banner keeps MIN_HASH_SIDE pixels for its hash."""
    w, h = rgb.size
    factor = min(max(w, h) // WORK_SIDE, max(1, min(w, h) // MIN_HASH_SIDE))
    return rgb.reduce(factor) if factor > 1 else rgb


def image_signals(image: Image.Image) -> Signals:
    """The signals of one decoded image (any mode), read from its working copy."""
    rgb = to_rgb(image)
    work = _working_copy(rgb)
    pixels = np.asarray(work)
    channels = pixels.reshape(-1, 3).astype(np.float32)
    squared = (channels * channels) @ _BRIGHTNESS_WEIGHTS      # brightness^2 * 255^2
    n = squared.size
    low, high = int(0.05 * (n - 1)), int(0.99 * (n - 1))
    # two single-order partitions: a third of the time of one asked for both orders
    p5 = np.sqrt(np.partition(squared, low)[low]) / 255.0
    p99 = np.sqrt(np.partition(squared, high)[high]) / 255.0
    wide = pixels.astype(np.int16)
    spread = np.maximum(np.abs(wide[..., 0] - wide[..., 1]), np.abs(wide[..., 1] - wide[..., 2]))
    grey = work.convert("L")
    grey_pixels = np.asarray(grey)
    return Signals(
        phash=perceptual_hash(grey),
        brightness_p99=float(p99), brightness_p5=float(p5),
        blurriness=edge_spread(grey),
        grayscale_std=_std(np.bincount(grey_pixels.ravel(), minlength=256))
        * HISTOGRAM_PIXELS / grey_pixels.size,
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

    def place(self, pos: np.ndarray, block: "SignalColumns") -> None:
        """The signals of a block of rows (a decode task's, in its order) at rows `pos`."""
        self.measured[pos] = block.measured
        self.phash[pos] = block.phash
        self.hashed[pos] = block.hashed
        for name, column in self.values.items():
            column[pos] = block.values[name]
        self.grayscale[pos] = block.grayscale

    def columns(self) -> dict[str, pd.Series]:
        """The signal columns, in SIGNAL_COLUMNS order (nullable: phash UInt64, grayscale
        boolean; floats NaN where not measured)."""
        phash = pd.arrays.IntegerArray(self.phash, ~self.hashed)
        grey = pd.arrays.BooleanArray(self.grayscale, ~self.measured)
        return {"phash": pd.Series(phash), **{k: pd.Series(v) for k, v in self.values.items()},
                "grayscale": pd.Series(grey)}
