"""Image folder source: one subfolder per class or identity (torchvision ImageFolder layout).

source:
  root: path/to/folder          # root/<label>/<image>
  labels_are: class             # class | identity (identities group samples for identity splits)
  extensions: [.jpg, .png]      # optional, default: common image extensions
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ml.dataset_spec import DatasetSpec
from ml.errors import ConfigError, SourceError
from ml.safe_paths import InsideRoot
from ml.sources.record import IMAGE_EXTENSIONS, SourceRecord, require_dir


def labels_are(spec: DatasetSpec) -> str:
    value = spec.source.get("labels_are", "class")
    if value not in ("class", "identity"):
        raise ConfigError(f"dataset {spec.name!r}: source.labels_are must be 'class' or "
                          f"'identity', got {value!r}")
    return value


def read_image_folder(spec: DatasetSpec) -> Iterator[SourceRecord]:
    root = require_dir(spec.source_path("root"), "source.root", spec.name)
    inside = InsideRoot(root)          # folders' real paths resolved once
    exts = tuple(e.lower() for e in spec.source.get("extensions", IMAGE_EXTENSIONS))
    identity = labels_are(spec) == "identity"
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False)
                     and not e.name.startswith("."))
    if not classes:
        raise SourceError(f"dataset {spec.name!r}: {root} has no class subfolders; an image "
                          "folder source needs root/<label>/<image> (one subfolder per class)")
    index = 0
    for label in classes:
        entries = sorted((e.name, e.is_symlink()) for e in os.scandir(root / label)
                         if not e.name.startswith(".") and e.name.lower().endswith(exts)
                         and (e.is_file() or e.is_symlink()))
        for fname, is_link in entries:
            key = f"{label}/{fname}"
            path, why = inside.listed(label, fname, is_link)
            yield SourceRecord(source_key=key, path=path, label=label,
                               group_id=label if identity else "",
                               group_kind="identity" if identity else "none",
                               index_in_source=index, invalid_reason=why)
            index += 1
