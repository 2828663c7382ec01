"""H5StoreDataset: images from an HDF5 image store (seed 001's solo-learn layout), one per item.

The store is indexed once at construction (from `/_meta`, or from the member names) and then
read through ml.formats.h5_store.H5StoreReader: read-only, opened lazily once per process and
thread, never shared with a parent process. That is what makes it safe under DataLoader workers
started by fork (the child opens its own handle instead of using the inherited one) and by spawn
(the dataset pickles without any handle). No retries, no SWMR, no dummy samples: a damaged store
is a FormatError naming the file and member, an undecodable image an ImageError.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ml.augmenter import Augmenter
from ml.datasets.pipeline import ImagePipeline, Transform, decode_bytes, source_path
from ml.formats.handles import H5StoreHandle
from ml.formats.h5_store import H5StoreIndex, H5StoreReader


def open_store(source: H5StoreReader | H5StoreHandle | str | os.PathLike) -> H5StoreReader:
    """A reader for a store given as a handle or a path (indexed now, opened on first read);
    an existing reader is shared as it is (its index is not built again)."""
    if isinstance(source, H5StoreReader):
        return source
    return H5StoreReader(source_path(source, H5StoreHandle, "path"))


def read_store_image(reader: H5StoreReader, row: int) -> Image.Image:
    """The decoded RGB image of row `row`; errors name `<store>:<member>`."""
    return decode_bytes(reader.read(row), f"{reader.path}:{reader.index.keys[row]}")


class H5StoreDataset(Dataset):
    """Every image of a store as (image, class index); `labels` holds the class index of each
    item (int64) and `index` the store's keys, sequences and frames."""

    def __init__(self, source: H5StoreHandle | str | os.PathLike,
                 transform: Transform | None = None, *, swap_color_channel: bool = False,
                 augmenter: Augmenter | None = None):
        self.reader = open_store(source)
        self.pipeline = ImagePipeline(transform, swap_color_channel, augmenter)
        self.labels = self.index.class_index.astype(np.int64)

    @property
    def index(self) -> H5StoreIndex:
        return self.reader.index

    @property
    def classes(self) -> list[str]:
        return self.index.classes

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        image = read_store_image(self.reader, index)
        return self.pipeline.item(image, int(self.index.class_index[index]))
