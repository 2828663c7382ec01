"""Source readers: one module per source kind, each turning a user's collection into
SourceRecords (what the label file or folder declares), without decoding any image. A reader
that holds its declarations as arrays (RecordIO's index) yields them as DataFrames whose
columns are SourceRecord fields instead, so a million samples cost no million objects.

SOURCE_READERS maps a kind to its reader; ml/catalog.py builds the catalog from them. A new
source kind is one module and one entry here.
"""

from __future__ import annotations

from typing import Callable, Iterable

import pandas as pd

from ml.dataset_spec import DatasetSpec
from ml.sources.before_after import read_before_after
from ml.sources.coco import read_coco
from ml.sources.h5_store import read_h5_store
from ml.sources.hybrid import read_hybrid
from ml.sources.image_folder import read_image_folder
from ml.sources.record import SourceRecord
from ml.sources.recordio import read_recordio

SourceReader = Callable[[DatasetSpec], Iterable[SourceRecord | pd.DataFrame]]

SOURCE_READERS: dict[str, SourceReader] = {
    "image_folder": read_image_folder,
    "before_after": read_before_after,
    "coco": read_coco,
    "hybrid": read_hybrid,
    "h5_store": read_h5_store,
    "recordio": read_recordio,
}

__all__ = ["SOURCE_READERS", "SourceRecord", "SourceReader"]
