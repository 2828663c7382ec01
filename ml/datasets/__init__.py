"""Torch datasets, one small class per source, with one item contract (ml/items.py): named
tuples, Item(image, label) or MaskedItem(image, label, mask) when the transform yields a mask,
and an item type of their own for the hybrid, temporal-pair and before/after datasets."""

from ml.datasets.h5_store import H5StoreDataset
from ml.datasets.hybrid import HybridDataset
from ml.datasets.image_folder import ImageFolderDataset
from ml.datasets.pipeline import ImagePipeline
from ml.datasets.recordio import RecordIODataset
from ml.datasets.temporal_pairs import TemporalPairDataset
from ml.datasets.tfrecord_stream import TFRecordStream
from ml.datasets.validation_memfile import ValidationMemfileDataset
from ml.items import Item, MaskedItem, make_item, mask_of

__all__ = [
    "H5StoreDataset", "HybridDataset", "ImageFolderDataset", "ImagePipeline", "Item",
    "MaskedItem", "make_item", "mask_of", "RecordIODataset", "TemporalPairDataset",
    "TFRecordStream", "ValidationMemfileDataset",
]
