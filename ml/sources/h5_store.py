"""HDF5 image store source (seed 001, solo-learn layout): `/<class>/<object>_<frame>.jpg`
datasets holding encoded image bytes as uint8. The class is the label; each object's frames
form a sequence (a group that never straddles two splits). The store is listed by
ml.formats.h5_store.index_h5_store, which also reads our own `/_meta` group when present.

Options: the `source:` section's model below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from pydantic import Field

from ml.errors import FormatError, SourceError
from ml.formats.h5_store import index_h5_store
from ml.options import Options
from ml.sources.kind import Location, SourceKind
from ml.sources.record import SourceRecord, require_file

if TYPE_CHECKING:
    from ml.dataset_spec import DatasetSpec


class H5StoreSource(Options):
    """`kind: h5_store`: an HDF5 image store, /<class>/<object>_<frame>.jpg (seed 001)."""

    file: Location = Field(description="The HDF5 store")


def read_h5_store(spec: DatasetSpec) -> Iterator[SourceRecord]:
    path = require_file(spec.source_path("file"), "source.file", spec.name)
    try:
        index = index_h5_store(path)
    except (FormatError, OSError) as exc:
        raise SourceError(f"dataset {spec.name!r}: cannot read {path} as an HDF5 image store "
                          f"({exc})") from None
    container = str(path.absolute())
    for i, key in enumerate(index.keys):
        yield SourceRecord(source_key=key, path=container, member=key,
                           label=index.classes[index.class_index[i]],
                           group_id=index.sequences[index.sequence[i]], group_kind="sequence",
                           frame_index=int(index.frame[i]), index_in_source=i)


KIND = SourceKind("h5_store", H5StoreSource, read_h5_store, images_option="file")
