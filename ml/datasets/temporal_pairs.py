"""TemporalPairDataset: two frames of one object sequence within a time window (seed 001).

Item i pairs frame i (the anchor) with a partner drawn uniformly from the OTHER frames of the
same sequence whose frame number is within `window` of the anchor's: |frame_a - frame_b| <=
window, a != b. The partner range of every frame is computed once at construction (one sorted
search over the store's index), so a lookup is O(1) whatever the sequence lengths.

Edge cases are counted, never hidden: when a frame has no partner in the window (its sequence
has one frame, or the nearest other frame is further than `window`), the partner is the nearest
frame of the sequence (the frame itself for a one-frame sequence) and the item's fallback flag
is True. `fallback_indices` / `fallback_count` say which and how many frames do this, known
before training starts; summing the flags of the items a run drew says how often it happened.
Seed 001 instead returned dummy samples with target -1 that nothing counted.
"""

from __future__ import annotations

import os
import numpy as np
from torch.utils.data import Dataset

from ml.augmenter import Augmenter
from ml.datasets.h5_store import open_store, read_store_image
from ml.datasets.pipeline import ImagePipeline, Transform
from ml.errors import ConfigError, FormatError
from ml.formats.handles import H5StoreHandle
from ml.items import PairItem
from ml.transforms import WorkerRandom

FRAME_BITS = 33                      # key = sequence << 33 | (frame + 1); frames are int32
MAX_WINDOW = 2 ** 31


def partner_ranges(sequence: np.ndarray, frame: np.ndarray,
                   window: int) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi) rows whose frame lies within `window` of each row's, in the same sequence
    (the row itself included). Rows must be sorted by (sequence, frame)."""
    seq_bits = sequence.astype(np.int64) << FRAME_BITS
    shifted = frame.astype(np.int64) + 1
    key = seq_bits | shifted
    if np.any(np.diff(key) < 0):
        raise ValueError("rows are not sorted by (sequence, frame)")
    lo = np.searchsorted(key, seq_bits | np.maximum(shifted - window, 0), side="left")
    hi = np.searchsorted(key, seq_bits | np.minimum(shifted + window, (1 << FRAME_BITS) - 1),
                         side="right")
    return lo.astype(np.int64), hi.astype(np.int64)


def nearest_frames(sequence: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """For each row, the adjacent row of its sequence with the closer frame number (the
    earlier on a tie), or the row itself when its sequence has one frame."""
    rows = np.arange(len(sequence), dtype=np.int64)
    frame = frame.astype(np.int64)
    far = np.iinfo(np.int64).max
    has_prev = np.r_[False, sequence[1:] == sequence[:-1]]
    has_next = np.r_[sequence[:-1] == sequence[1:], False]
    prev_gap = np.where(has_prev, frame - np.r_[0, frame[:-1]], far)
    next_gap = np.where(has_next, np.r_[frame[1:], 0] - frame, far)
    nearest = np.where(next_gap < prev_gap, rows + 1, rows - 1)
    return np.where(has_prev | has_next, nearest, rows)


class TemporalPairDataset(Dataset):
    """(view_a, view_b, label, fallback) per frame of an HDF5 image store.

    view_a is the anchor frame, view_b its temporal partner, both through the same pipeline
    (swap_color_channel, augmenter, transform: two independent augmentations, as contrastive
    training wants); label is the class index; fallback is True when the partner had to be the
    nearest frame outside the window (see the module docstring). `seed=None` draws partners
    from Python's `random`, which the DataLoader seeds per worker; an integer seed makes the
    draws reproducible.
    """

    def __init__(self, source: H5StoreHandle | str | os.PathLike, window: int = 3,
                 transform: Transform | None = None, *, swap_color_channel: bool = False,
                 augmenter: Augmenter | None = None, seed: int | None = None):
        if not isinstance(window, (int, np.integer)) or not 1 <= window <= MAX_WINDOW:
            raise ConfigError(f"TemporalPairDataset: window={window!r}; use a whole number of "
                              "frames >= 1 (partners satisfy |frame_a - frame_b| <= window)")
        self.reader = open_store(source)
        self.window = int(window)
        self.pipeline = ImagePipeline(transform, swap_color_channel, augmenter)
        self.random = WorkerRandom(seed)
        index = self.reader.index
        self.labels = index.class_index.astype(np.int64)
        try:
            self.partner_lo, self.partner_hi = partner_ranges(index.sequence, index.frame,
                                                              self.window)
        except ValueError as exc:
            raise FormatError(index.path, None, f"store index: {exc}; rewrite the store") from None
        edge = self.partner_hi - self.partner_lo <= 1
        self.fallback_partner = np.where(edge, nearest_frames(index.sequence, index.frame), -1)
        self.fallback_indices = np.flatnonzero(edge)

    @property
    def fallback_count(self) -> int:
        """How many frames have no partner within the window (each pairs with its nearest)."""
        return len(self.fallback_indices)

    @property
    def single_frame_sequences(self) -> int:
        """How many sequences have only one frame (those pair a frame with itself)."""
        starts = self.reader.index.sequence_start
        return int(np.count_nonzero(np.diff(starts) == 1))

    def partner(self, index: int) -> tuple[int, bool]:
        """(partner row, fallback) for anchor row `index`, in O(1)."""
        lo, hi = int(self.partner_lo[index]), int(self.partner_hi[index])
        if hi - lo > 1:
            row = lo + self.random.get().randrange(hi - lo - 1)
            return row + (row >= index), False
        return int(self.fallback_partner[index]), True

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> PairItem:
        other, fallback = self.partner(index)
        view_a = self.pipeline(read_store_image(self.reader, index))
        view_b = self.pipeline(read_store_image(self.reader, other))
        return PairItem(view_a, view_b, int(self.labels[index]), fallback)
