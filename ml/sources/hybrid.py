"""Hybrid source (seed 000): labels in an HDF5 file, images on disk beside it.

source:
  labels_file: path/to/labels.h5
  images_dir: path/to/images
  extension: .jpg                 # file = images_dir/<image id><extension>
  ids_key: image_ids              # dataset of image ids (strings)
  label_key: labels/identity      # dataset of labels (optional: unlabeled when absent)
  labels_are: identity            # class | identity
  require_labels: [labels/age]    # samples whose value is null (NaN) here are excluded (unused)
"""

from __future__ import annotations

from typing import Iterator

import h5py
import numpy as np

from ml.dataset_spec import DatasetSpec
from ml.errors import FormatError, SourceError
from ml.sources.image_folder import labels_are
from ml.safe_paths import InsideRoot
from ml.sources.record import SourceRecord, require_dir, require_file


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
    ext = str(spec.source.get("extension", ".jpg"))
    identity = labels_are(spec) == "identity"
    try:
        h5 = h5py.File(labels_path, "r")
    except OSError as exc:
        raise SourceError(f"dataset {spec.name!r}: cannot open {labels_path} as HDF5 ({exc}); "
                          "is it really an HDF5 label file?") from None
    label_key = spec.source.get("label_key")
    with h5:
        try:
            ids = _dataset(h5, spec.source.get("ids_key", "image_ids"), labels_path, spec)
            labels = _dataset(h5, label_key, labels_path, spec) if label_key else None
            required = [(_k, _dataset(h5, _k, labels_path, spec))
                        for _k in spec.source.get("require_labels", [])]
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
