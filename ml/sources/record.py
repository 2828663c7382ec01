"""SourceRecord: one declared sample, as a source reader sees it, plus path-safety helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ml.errors import SourceError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


@dataclass
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


def resolve_inside(root: Path, identifier: str) -> tuple[str, str]:
    """Resolve a label-file identifier under `root`; return (absolute path, '') or ('', why invalid).

    Refused: absolute paths, '..' that climbs out of the root, and symlinks (anywhere on the way)
    that resolve outside the root. The file itself need not exist (missing files are the
    verification's business); it is never opened here.
    """
    if not identifier or "\x00" in identifier:
        return "", "empty identifier" if not identifier else "NUL byte in identifier"
    if os.path.isabs(identifier) or identifier.startswith(("/", "\\")) or \
            (len(identifier) > 1 and identifier[1] == ":"):
        return "", "absolute path (identifiers must be relative to the images folder)"
    root_resolved = root.resolve()
    candidate = root / identifier
    normalized = Path(os.path.normpath(candidate))
    try:
        normalized.relative_to(Path(os.path.normpath(root)))
    except ValueError:
        return "", "'..' climbs out of the images folder"
    resolved = candidate.resolve(strict=False)
    try:
        resolved.relative_to(root_resolved)
    except ValueError:
        return "", f"symlink resolves outside the images folder (to {resolved})"
    return str(normalized.absolute()), ""
