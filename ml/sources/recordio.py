"""RecordIO source: a user's existing insightface face dataset (MS1MV2, WebFace, ...) as
train.rec + train.idx (+ property), legacy or RecBuilder layout. Labels come from the record
headers; no image is decoded to build the catalog, and when `property` gives the image size
(insightface writes every face at that size) no image header is read either: one record at a
time in the main thread cost ~480 us per record, 45 minutes for MS1MV2's 5.8M faces.

source:
  path: /data/faces_emore          # the folder holding train.rec, or the .rec file itself
"""

from __future__ import annotations

from typing import Iterator

from ml.dataset_spec import DatasetSpec
from ml.errors import FormatError, SourceError
from ml.formats.insightface_rec import open_face_rec
from ml.sources.record import SourceRecord


def read_recordio(spec: DatasetSpec) -> Iterator[SourceRecord]:
    location = spec.source_path("path")
    if location is None or not location.exists():
        raise SourceError(f"dataset {spec.name!r}: source.path {location} does not exist; point "
                          "it at the folder holding train.rec/train.idx or at the .rec file")
    try:
        index = open_face_rec(location)
    except FormatError as exc:
        raise SourceError(f"dataset {spec.name!r}: cannot read {location} as an insightface "
                          f"RecordIO dataset ({exc})") from None
    rec_path = str(index.reader.rec_path)
    height, width = index.image_size if index.image_size else (None, None)
    try:
        for i, (key, label) in enumerate(zip(index.image_keys.tolist(), index.labels.tolist())):
            yield SourceRecord(source_key=str(key), path=rec_path, member=str(key),
                               label=str(label), group_id=str(label), group_kind="identity",
                               index_in_source=i, width=width, height=height)
    finally:
        index.close()
