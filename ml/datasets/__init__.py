"""Torch datasets, one small class per source, with one item contract (see ml.datasets.pipeline):
(image, label), or (image, label, mask) when the transform yields a mask."""

from ml.datasets.h5_store import H5StoreDataset
from ml.datasets.hybrid import HybridDataset
from ml.datasets.image_folder import ImageFolderDataset
from ml.datasets.pipeline import ImagePipeline, make_item
from ml.datasets.recordio import RecordIODataset
from ml.datasets.temporal_pairs import TemporalPairDataset
from ml.datasets.tfrecord_stream import TFRecordStream
from ml.datasets.validation_memfile import ValidationMemfileDataset

__all__ = [
    "H5StoreDataset", "HybridDataset", "ImageFolderDataset", "ImagePipeline", "make_item",
    "RecordIODataset", "TemporalPairDataset", "TFRecordStream", "ValidationMemfileDataset",
]
