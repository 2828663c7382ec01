"""Per-image quality signals, computed on the image verification already decodes.

Verification at level `decode` decodes every image (JPEGs through the DCT draft, whose longer
side stays at least DRAFT_SIDE when signals are asked). Each decoded image goes to a
`SignalBatch` as its small working copy, and the measures run in numpy after the task's
decodes, MEASURE_BATCH equal-sized copies per call (one image's worth of numpy calls costs more
than their arithmetic): never a second pass over the file. The brightness percentiles and the
colour test are sample statistics: they read every other pixel of every other row of the
working copy (a 1/8 JPEG draft's pixel is already the mean of an 8 x 8 block).

| column | what | cleanvision's property |
| --- | --- | --- |
| phash | 64-bit perceptual hash: DCT of the 32x32 grey image (bilinear with Pillow's antialias weights, in float, so no Pillow release changes a hash), the 8x8 lowest frequencies against their median (imagehash.phash's bits) | near_duplicates (phash, hash_size 8) |
| brightness_p99, brightness_p5 | percentiles of the perceived brightness sqrt(0.241 R^2 + 0.691 G^2 + 0.068 B^2) / 255, over a quarter of the pixels (a 2 x 2 grid) | dark, light |
| blurriness, grayscale_std | standard deviation of the edge image (FIND_EDGES, without the 1-pixel border Pillow leaves unfiltered, which cleanvision counts) of the grey image, and of its histogram | blurry |
| entropy | Shannon entropy of the image's histogram (bits) | low_information |
| grayscale | all but 1% of the pixels (on the 2 x 2 grid) with channels within GREY_TOLERANCE of each other (cleanvision only looks at the file's mode, so a grey photo saved as RGB is missed) | grayscale |

Any mode (grey, 16-bit, CMYK, palette, alpha, animated: the first frame) is read through
ml.imageio.to_rgb. An image smaller than MIN_HASH_SIDE on a side gets no phash (NULL), and is
reported as such, never an exception.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from PIL import Image

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
MEASURE_BATCH = 8          # working copies measured in one numpy call: enough to spread the
                           # calls' overhead, few enough that the temporaries stay below malloc's
                           # mmap threshold (32 per call took 40 page faults per image)
PENDING_BYTES = 16 << 20    # block memory a batch holds before it measures its blocks
GREY_TOLERANCE = 6         # channel spread (0..255) still counted as grey: JPEG chroma noise

SIGNAL_COLUMNS = ("phash", "brightness_p99", "brightness_p5", "blurriness", "grayscale_std",
                  "entropy", "grayscale")


def _dct_matrix(n: int) -> np.ndarray:
    """Unnormalised DCT-II (scipy.fftpack.dct's, which imagehash uses): C[k, i] = 2 cos(pi k (2i+1) / 2n)."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT = _dct_matrix(HASH_SIDE)[:HASH_BITS_SIDE]          # only the rows of the low frequencies
# of RGBX pixels in float (X weighs 0): the squared brightness, and two channel differences
_BRIGHTNESS_WEIGHTS = np.array([0.241, 0.691, 0.068, 0], dtype=np.float32)
_RED_MINUS_GREEN = np.array([1, -1, 0, 0], dtype=np.float32)
_GREEN_MINUS_BLUE = np.array([0, 1, -1, 0], dtype=np.float32)


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


@lru_cache(maxsize=64)
def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Bilinear resampling of one axis as an (out_size, in_size) matrix, with Pillow's
    antialiasing weights (its triangle widened by the reduction factor, normalised per output
    pixel: Resample.c's precompute_coeffs). Applied in float with no rounding in between, so a
    hash does not depend on the pass order or the fixed-point rounding of a Pillow release."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    matrix = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - filterscale + 0.5), 0)
        xmax = min(int(center + filterscale + 0.5), in_size)
        w = np.maximum(1.0 - np.abs((np.arange(xmin, xmax) - center + 0.5) / filterscale), 0.0)
        matrix[xx, xmin:xmax] = w / w.sum() if w.sum() else w
    return matrix


@lru_cache(maxsize=64)
def _low_frequencies(in_size: int) -> np.ndarray:
    """The 8 lowest DCT frequencies of an axis resampled to HASH_SIDE, as one (8, in_size)
    matrix: DCT @ (B @ grey @ B.T) @ DCT.T is (DCT @ B) @ grey @ (DCT @ B).T, a fifth of the
    arithmetic on an 80 x 60 image."""
    return _DCT @ _bilinear_matrix(in_size, HASH_SIDE)


def _perceptual_hashes(grey: np.ndarray) -> np.ndarray:
    """imagehash.phash(image, hash_size=8)'s bits as 64-bit integers (bit 63 first), of grey
    images (B, h, w) uint8, from their bilinear HASH_SIDE x HASH_SIDE copies."""
    h, w = grey.shape[1:]
    low = (_low_frequencies(h) @ grey.astype(np.float64) @ _low_frequencies(w).T).reshape(
        len(grey), HASH_BITS_SIDE * HASH_BITS_SIDE)
    ordered = np.sort(low, axis=1)
    bits = low > ((ordered[:, 31] + ordered[:, 32]) / 2)[:, None]     # above the median
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def _std_rows(values: np.ndarray) -> np.ndarray:
    """Population standard deviation of each row of non-negative integers whose squares fit
    their type (the sums of values and of squares are exact in int64)."""
    v = values.reshape(len(values), -1)
    m = v.shape[1]
    mean = v.sum(axis=1, dtype=np.int64) / m
    return np.sqrt(np.maximum(np.square(v).sum(axis=1, dtype=np.int64) / m - mean * mean, 0.0))


def _edge_spread(grey: np.ndarray) -> np.ndarray:
    """Standard deviation of Pillow's FIND_EDGES (8 x centre - its 8 neighbours, clipped to
    0..255) over the interior pixels of grey images (B, h, w): the filter leaves its 1-pixel
    border unfiltered (the image's own values), which cleanvision counts and which, on a 64 px
    image, outweighs the edges of a smooth picture."""
    if min(grey.shape[1:]) < 3:
        return np.zeros(len(grey))
    wide = grey.astype(np.int16)
    rows = wide[:, :-2] + wide[:, 1:-1] + wide[:, 2:]
    box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    edges = 9 * wide[:, 1:-1, 1:-1] - box
    np.clip(edges, 0, 255, out=edges)
    return _std_rows(edges.view(np.uint16))          # 0..255: squares fit 16 bits


def _working_copy(rgb: Image.Image) -> Image.Image:
    """The image reduced by whole-pixel box averaging to WORK_SIDE..2 x WORK_SIDE pixels on
    its longer side (box averaging keeps the edges a blur measure reads; an interpolating
    resize softens them); a banner keeps MIN_HASH_SIDE pixels for its hash."""
    w, h = rgb.size
    factor = min(max(w, h) // WORK_SIDE, max(1, min(w, h) // MIN_HASH_SIDE))
    return rgb.reduce(factor) if factor > 1 else rgb


def _measure(pixels: np.ndarray, grey: np.ndarray) -> dict[str, np.ndarray | bool]:
    """The signals of B working copies of one size, (B, h, w, 4) RGBX uint8 and their grey
    images (B, h, w) uint8, as columns (all but the entropy, which Pillow gives per image);
    `hashed`: whether the size has a hash."""
    count, h, w = grey.shape
    n = h * w
    # every other pixel of every other row, copied whole (4 bytes a pixel): the sample
    # statistics read it contiguously, in float
    grid = np.ascontiguousarray(pixels.view(np.uint32).reshape(count, h, w)[:, ::2, ::2])
    channels = grid.view(np.uint8).reshape(count, -1, 4).astype(np.float32)
    m = channels.shape[1]
    spread = np.abs(channels @ _RED_MINUS_GREEN)
    np.maximum(spread, np.abs(channels @ _GREEN_MINUS_BLUE), out=spread)
    coloured = np.count_nonzero(spread > GREY_TOLERANCE, axis=1)
    channels *= channels
    ordered = np.sort(channels @ _BRIGHTNESS_WEIGHTS, axis=1)      # brightness^2 * 255^2
    p5, p99 = ordered[:, int(0.05 * (m - 1))], ordered[:, int(0.99 * (m - 1))]
    offsets = np.arange(0, 256 * count, 256, dtype=np.uint16 if count <= 256 else np.int64)
    histogram = np.bincount((grey.reshape(count, n) + offsets[:, None]).ravel(),
                            minlength=256 * count).reshape(count, 256)
    hashed = min(h, w) >= MIN_HASH_SIDE
    return {
        "phash": _perceptual_hashes(grey) if hashed else np.zeros(count, np.uint64),
        "hashed": hashed,
        "brightness_p99": np.sqrt(p99) / 255.0, "brightness_p5": np.sqrt(p5) / 255.0,
        "blurriness": _edge_spread(grey),
        "grayscale_std": _std_rows(histogram) * HISTOGRAM_PIXELS / n,
        "grayscale": coloured <= 0.01 * m,
    }


class _Block:
    """MEASURE_BATCH working copies of one size, each pasted as it comes into one numpy array
    (B, h, w, 4) that a Pillow image of mode RGBX shares: Pillow keeps RGB pixels in 4 bytes,
    so the paste is a row copy, with no bytes object per image (tobytes allocated a 64 KB
    buffer per call: about 12 us an image between decodes)."""

    def __init__(self, size: tuple[int, int]):
        w, h = size
        self.height = h
        self.pixels = np.empty((MEASURE_BATCH, h, w, 4), dtype=np.uint8)
        self._strip = Image.frombuffer("RGBX", (w, h * MEASURE_BATCH), self.pixels, "raw",
                                       "RGBX", 0, 1)
        self.rows: list[int] = []
        self.entropy: list[float] = []

    @property
    def full(self) -> bool:
        return len(self.rows) == MEASURE_BATCH

    def add(self, row: int, rgb: Image.Image) -> None:
        top = len(self.rows) * self.height
        # the core paste: Image.paste would convert RGB to the strip's mode, and refuse to
        # write to memory it does not own
        self._strip.im.paste(rgb.im, (0, top, rgb.width, top + self.height))
        self.rows.append(row)
        self.entropy.append(rgb.entropy())

    def measure(self) -> tuple[np.ndarray, dict[str, np.ndarray | bool]]:
        count, h, w = len(self.rows), *self.pixels.shape[1:3]
        grey = np.asarray(self._strip.convert("L")).reshape(MEASURE_BATCH, h, w)[:count]
        columns = _measure(self.pixels[:count], grey)
        columns["entropy"] = np.asarray(self.entropy)
        return np.asarray(self.rows, dtype=np.int64), columns


class SignalBatch:
    """The signals of many images, measured together: each image is reduced to its working
    copy as it is decoded and pasted into a block of its size (`add`, the per-image Pillow
    work), and the numpy work runs after the decodes (`measure`: the JPEG decoder's tables
    stay in cache between images), a block of MEASURE_BATCH equal-sized copies at a time: one
    numpy call per image and signal costs more than the arithmetic on an 80 x 60 copy. Blocks
    waiting are measured early when they pass PENDING_BYTES (a task of a thousand banners
    keeps bounded memory)."""

    def __init__(self) -> None:
        self._open: dict[tuple[int, int], _Block] = {}
        self._waiting: list[_Block] = []
        self._pending_bytes = 0
        self._measured: list[tuple[np.ndarray, dict[str, np.ndarray | bool]]] = []

    def add(self, row: int, image: Image.Image) -> None:
        """Take the working copy of a decoded image (any mode) for block row `row`."""
        work = _working_copy(to_rgb(image))
        block = self._open.get(work.size)
        if block is None or block.full:
            block = self._open[work.size] = _Block(work.size)
            self._waiting.append(block)
            self._pending_bytes += block.pixels.nbytes
        block.add(row, work)
        if self._pending_bytes > PENDING_BYTES:
            self._measure_pending()

    def _measure_pending(self) -> None:
        self._measured.extend(block.measure() for block in self._waiting)
        self._open, self._waiting, self._pending_bytes = {}, [], 0

    def measure(self, n: int) -> "SignalColumns":
        """The signals of a block of n rows; rows never added read as NULL."""
        self._measure_pending()
        block = SignalColumns(n)
        for rows, columns in self._measured:
            block.fill(rows, columns)
        return block


def image_signals(image: Image.Image) -> Signals:
    """The signals of one decoded image (any mode), read from its working copy."""
    batch = SignalBatch()
    batch.add(0, image)
    return batch.measure(1).row(0)


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

    def fill(self, rows: np.ndarray, measured: dict[str, np.ndarray | bool]) -> None:
        """Rows `rows`, measured together (`_measure`'s columns plus the entropy)."""
        self.measured[rows] = True
        self.hashed[rows] = measured["hashed"]
        self.phash[rows] = measured["phash"]
        for name, column in self.values.items():
            column[rows] = measured[name]
        self.grayscale[rows] = measured["grayscale"]

    def row(self, pos: int) -> Signals:
        """One measured row's signals (floats as stored: float32)."""
        return Signals(phash=int(self.phash[pos]) if self.hashed[pos] else None,
                       **{name: float(column[pos]) for name, column in self.values.items()},
                       grayscale=bool(self.grayscale[pos]))

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
