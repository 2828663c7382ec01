"""ValidationMemfileDataset: seed 002's FiveValidationDataset over a validation memfile.

Items are PairImageItem(image tensor, issame, dataname, index) (ml/items.py) for every image
of the concatenated verification sets, in file order (pairs are consecutive rows 2k, 2k+1;
issame is the pair's flag, repeated for both images; dataname the set's code, see
`dataname_to_idx`). Images come from the memfile mapped read-only and each item is a copy, so
a batch never aliases the mapping and nothing can write to the file. The mapping is not
pickled: a spawned worker maps the file itself (a memmap would otherwise be pickled as a full
in-memory copy), a forked one shares the parent's.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from ml.datasets.pipeline import source_path
from ml.errors import FormatError
from ml.formats.handles import MemfileHandle
from ml.formats.insightface_bin import open_validation_memfile
from ml.formats.memfile import open_memfile
from ml.items import PairImageItem


class ValidationMemfileDataset(Dataset):
    """The images (N x 3 x S x S) of a validation memfile with their issame and dataname."""

    def __init__(self, source: MemfileHandle | str | os.PathLike):
        self.path = source_path(source, MemfileHandle, "path")
        opened = open_validation_memfile(self.path)
        if isinstance(source, MemfileHandle) and tuple(opened.images.shape) != tuple(source.shape):
            raise FormatError(self.path, None, f"holds images of shape {opened.images.shape} but "
                              f"the handle recorded {tuple(source.shape)}: the memfile changed "
                              "after it was built; re-run the validation_memfile asset")
        self._images: np.ndarray | None = opened.images
        self.issame = np.array(opened.issame, dtype=bool)
        self.dataname = np.array(opened.dataname, dtype=np.int64)
        self.dataname_to_idx = dict(opened.dataname_to_idx)
        self.shape = tuple(opened.images.shape)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    @property
    def images(self) -> np.ndarray:
        """The read-only mapping of the images (mapped again after unpickling)."""
        if self._images is None:
            self._images = open_memfile(self.path, mode="r")
        return self._images

    @property
    def num_pairs(self) -> int:
        return len(self) // 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> PairImageItem:
        image = torch.from_numpy(np.array(self.images[index]))
        return PairImageItem(image, bool(self.issame[index]), int(self.dataname[index]),
                             int(index))
