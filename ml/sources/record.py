"""SourceRecord: one declared sample, as a source reader sees it, and the checks of a source's
folders and files (containment of identifiers: ml.safe_paths.InsideRoot)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ml.errors import SourceError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


@dataclass(slots=True)    # a million are alive while a catalog is built: no __dict__ each
class SourceRecord:
    source_key: str              # the identifier as declared (relative path, label-file id, h5 key)
    path: str                    # absolute file path ('' when the identifier is invalid); h5 container
    label: str = ""              # label name ('' = unlabeled)
    member: str = ""             # key inside an HDF5 container, '' for plain files
    group_id: str = ""           # identity, object sequence or before/after pair ('' = the sample itself)
    group_kind: str = "none"     # none | identity | sequence | pair
    frame_index: int = -1        # position in an object sequence, -1 when not a sequence
    role: str = ""               # before | after for image pairs
    used: bool = True            # False: declared in the label file but excluded by the dataset
    index_in_source: int = 0     # position in the label file / listing (seed 000's missing_indices)
    invalid_reason: str = ""     # why the identifier is refused (escapes the root, absolute, ...)
    supercategory: str = ""      # COCO/iNaturalist supercategory
    width: int | None = None     # known without reading the image (a RecordIO `property`):
    height: int | None = None    #   the catalog then reads no header for this sample


def require_dir(path: Path | None, what: str, dataset: str) -> Path:
    if path is None or not path.is_dir():
        raise SourceError(f"dataset {dataset!r}: {what} {path} does not exist or is not a folder; "
                          "fix the path in config/datasets.yaml (relative paths start at the repo root)")
    return path


def require_file(path: Path | None, what: str, dataset: str) -> Path:
    if path is None or not path.is_file():
        raise SourceError(f"dataset {dataset!r}: {what} {path} does not exist or is not a file; "
                          "fix the path in config/datasets.yaml (relative paths start at the repo root)")
    return path
