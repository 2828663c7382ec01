"""Hybrid source (seed 000): labels in an HDF5 file, images on disk beside it.

Options: the `source:` section's model below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional

import h5py
import numpy as np
from pydantic import Field

from ml.errors import FormatError, SourceError
from ml.options import Options, Text
from ml.safe_paths import InsideRoot
from ml.sources.image_folder import LABELS_ARE, LabelsAre
from ml.sources.kind import Extension, Location, SourceKind
from ml.sources.record import SourceRecord, require_dir, require_file

if TYPE_CHECKING:
    from ml.dataset_spec import DatasetSpec


class HybridSource(Options):
    """`kind: hybrid`: labels in an HDF5 file, images on disk beside it (seed 000)."""

    labels_file: Location = Field(description="The HDF5 label file")
    images_dir: Location = Field(description="The folder holding the images")
    extension: Extension = Field(".jpg", description="An image's file is images_dir/<image id><extension>")
    ids_key: Text = Field("image_ids", description="The label file's dataset of image ids (strings)")
    label_key: Optional[Text] = Field(None, description="The label file's dataset of labels, e.g. labels/identity (null: unlabeled)")
    labels_are: LabelsAre = Field("class", description=LABELS_ARE)
    require_labels: list[Text] = Field(default_factory=list, description="Datasets whose null (NaN) entries exclude their samples (declared, unused), e.g. [labels/age]")


def _dataset(h5: h5py.File, key: str, path, spec: DatasetSpec) -> np.ndarray:
    if key not in h5 or not isinstance(h5[key], h5py.Dataset):
        available = []
        h5.visititems(lambda n, o: available.append(n) if isinstance(o, h5py.Dataset) else None)
        raise SourceError(f"dataset {spec.name!r}: {path} has no dataset {key!r}; it holds "
                          f"{', '.join(available) or 'no datasets'}. Set the right key in "
                          "config/datasets.yaml")
    return h5[key][()]


def _label_name(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")   # undecodable bytes: see ml/catalog.py
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value)


def read_hybrid(spec: DatasetSpec) -> Iterator[SourceRecord]:
    labels_path = require_file(spec.source_path("labels_file"), "source.labels_file", spec.name)
    root = require_dir(spec.source_path("images_dir"), "source.images_dir", spec.name)
    inside = InsideRoot(root)          # folders' real paths resolved once
    ext = spec.source.extension
    identity = spec.source.labels_are == "identity"
    try:
        h5 = h5py.File(labels_path, "r")
    except OSError as exc:
        raise SourceError(f"dataset {spec.name!r}: cannot open {labels_path} as HDF5 ({exc}); "
                          "is it really an HDF5 label file?") from None
    label_key = spec.source.label_key
    with h5:
        try:
            ids = _dataset(h5, spec.source.ids_key, labels_path, spec)
            labels = _dataset(h5, label_key, labels_path, spec) if label_key else None
            required = [(_k, _dataset(h5, _k, labels_path, spec))
                        for _k in spec.source.require_labels]
        except (OSError, RuntimeError) as exc:   # h5py: "Object visitation failed", bad headers
            raise FormatError(labels_path, None, f"dataset {spec.name!r}: the HDF5 label file's "
                              f"metadata is damaged ({exc}); re-copy or rewrite it") from None
    for arr, key in [(labels, label_key), *[(a, k) for k, a in required]]:
        if arr is not None and len(arr) != len(ids):
            raise SourceError(f"{labels_path}: {key!r} has {len(arr)} entries but the image ids "
                              f"have {len(ids)}; they must be aligned")
    for i, raw in enumerate(ids):
        image_id = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)
        key = image_id + ext
        label = _label_name(labels[i]) if labels is not None else ""
        used = all(not (np.issubdtype(a.dtype, np.floating) and np.isnan(a[i])) for _, a in required)
        path, why = inside.resolve(key)
        yield SourceRecord(source_key=key, path=path, label=label,
                           group_id=label if identity and label else "",
                           group_kind="identity" if identity and label else "none",
                           used=used, index_in_source=i, invalid_reason=why)


KIND = SourceKind("hybrid", HybridSource, read_hybrid, images_option="images_dir")
