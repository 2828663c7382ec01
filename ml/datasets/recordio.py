"""RecordIODataset: an insightface face dataset in MXNet RecordIO (seed 002's AugmentRecordDataset).

Both insightface layouts (legacy faces_emore with header and identity records, and RecBuilder)
are opened through ml.formats.insightface_rec.open_face_rec, which reads each record's IRHeader
label with one small pread and never decodes an image at start-up. Images are read and decoded
per item. The .rec descriptor is opened lazily in each process (a forked or spawned DataLoader
worker opens its own).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ml.augmenter import Augmenter
from ml.datasets.pipeline import ImagePipeline, Transform, decode_bytes
from ml.errors import FormatError
from ml.formats.handles import RecordIOHandle
from ml.formats.insightface_rec import FaceRecIndex, open_face_rec


def _open(source: RecordIOHandle | str | os.PathLike) -> FaceRecIndex:
    if not isinstance(source, RecordIOHandle):
        return open_face_rec(source)
    index = source.open_index()
    if len(index) != source.num_images:
        index.close()
        raise FormatError(source.rec_path, None, f"the packing step recorded "
                          f"{source.num_images} images but the file holds {len(index)}: it "
                          "changed after packing; re-run the recordio asset")
    return index


class RecordIODataset(Dataset):
    """Face images and identity labels from train.rec/train.idx/property.

    `source` is a RecordIOHandle, a dataset folder, or a train.rec path. `labels` (int64, one
    per item, from the record headers) and `num_classes` are available without reading any
    image, e.g. for ml.samplers.RandomIdentitySampler(dataset.labels, ...).
    """

    def __init__(self, source: RecordIOHandle | str | os.PathLike,
                 transform: Transform | None = None, *, swap_color_channel: bool = False,
                 augmenter: Augmenter | None = None):
        self.index = _open(source)
        self.pipeline = ImagePipeline(transform, swap_color_channel, augmenter)

    @property
    def labels(self) -> np.ndarray:
        return self.index.labels

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    @property
    def layout(self) -> str:
        return self.index.layout

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        key = int(self.index.image_keys[index])
        name = f"{self.index.reader.rec_path} key {key}"
        image = decode_bytes(self.index.read_image(key), name)
        return self.pipeline.item(image, int(self.index.labels[index]))
