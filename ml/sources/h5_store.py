"""HDF5 image store source (seed 001, solo-learn layout): `/<class>/<object>_<frame>.jpg`
datasets holding encoded image bytes as uint8. The class is the label; each object's frames
form a sequence (a group that never straddles two splits).

source:
  file: path/to/sequences.h5
"""

from __future__ import annotations

import re
from typing import Iterator

import h5py

from ml.dataset_spec import DatasetSpec
from ml.errors import SourceError
from ml.sources.record import SourceRecord, require_file

FRAME_RE = re.compile(r"^(?P<object>.+)_(?P<frame>\d+)\.[A-Za-z0-9]+$")


def list_members(h5: h5py.File) -> list[str]:
    """Every dataset key of the store except internal groups (names starting with '_')."""
    keys: list[str] = []
    for cls in sorted(h5):
        if cls.startswith("_") or not isinstance(h5[cls], h5py.Group):
            continue
        keys.extend(f"{cls}/{name}" for name in sorted(h5[cls])
                    if isinstance(h5[cls][name], h5py.Dataset))
    return keys


def read_h5_store(spec: DatasetSpec) -> Iterator[SourceRecord]:
    path = require_file(spec.source_path("file"), "source.file", spec.name)
    try:
        with h5py.File(path, "r") as h5:
            members = list_members(h5)
    except OSError as exc:
        raise SourceError(f"dataset {spec.name!r}: cannot open {path} as HDF5 ({exc})") from None
    for i, key in enumerate(members):
        cls, name = key.split("/", 1)
        m = FRAME_RE.match(name)
        obj, frame = (m["object"], int(m["frame"])) if m else (name, -1)
        yield SourceRecord(source_key=key, path=str(path.absolute()), member=key, label=cls,
                           group_id=f"{cls}/{obj}", group_kind="sequence", frame_index=frame,
                           index_in_source=i)
