"""Source kinds: one module per kind, each turning a user's collection into SourceRecords (what
the label file or folder declares), without decoding any image. A reader that holds its
declarations as arrays (RecordIO's index) yields them as DataFrames whose columns are
SourceRecord fields instead, so a million samples cost no million objects.

Each module declares its kind once, as a `SourceKind` (ml/sources/kind.py): name, the options
model of its `source:` section, reader and images option. SOURCE_KINDS lists them; a new source
kind is one module and one entry here.
"""

from __future__ import annotations

from ml.sources import before_after, coco, h5_store, hybrid, image_folder, recordio
from ml.sources.kind import SourceKind, SourceReader
from ml.sources.record import SourceRecord

SOURCE_KINDS: dict[str, SourceKind] = {module.KIND.name: module.KIND for module in (
    image_folder, before_after, coco, hybrid, h5_store, recordio)}

__all__ = ["SOURCE_KINDS", "SourceKind", "SourceReader", "SourceRecord"]
