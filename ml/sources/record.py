"""SourceRecord: one declared sample, as a source reader sees it, plus path-safety helpers."""

from __future__ import annotations

import os
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


def resolve_inside(root: Path, identifier: str) -> tuple[str, str]:
    """Resolve one label-file identifier under `root` (see InsideRoot; for many identifiers,
    make one InsideRoot and call its `resolve`, which remembers each folder's real path)."""
    return InsideRoot(root).resolve(identifier)


class InsideRoot:
    """Where identifiers (relative paths from a label file or a folder listing) lie under one
    images folder, decided as a string prefix test on the real path of each file's folder,
    resolved once per folder; a file that is itself a symlink is resolved on its own.

    `resolve(identifier)` returns (absolute path, '') or ('', why it is invalid). Refused:
    absolute paths and drive prefixes, '..' that climbs out of the root, names of the root
    itself, and symlinks (anywhere on the way) that resolve outside the root. The file need not
    exist (missing files are the verification's business); it is never opened here.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = os.path.normpath(os.path.abspath(root))
        self.real_root = os.path.realpath(self.root)
        self._real_folders: dict[str, str] = {}

    def _inside_real_root(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def listed(self, folder: str, name: str, is_symlink: bool) -> tuple[str, str]:
        """A file found by listing `folder` (a path relative to the root, itself no symlink:
        image-folder sources skip symlinked class folders), as `resolve` would say: a listed
        name is one plain component, so only a symlinked file is resolved."""
        if is_symlink:
            return self.resolve(f"{folder}/{name}")
        return os.path.join(self.root, folder, name), ""

    def resolve(self, identifier: str) -> tuple[str, str]:
        if not identifier or "\x00" in identifier:
            return "", "empty identifier" if not identifier else "NUL byte in identifier"
        if os.path.isabs(identifier) or identifier.startswith(("/", "\\")) or \
                (len(identifier) > 1 and identifier[1] == ":"):
            return "", "absolute path (identifiers must be relative to the images folder)"
        normalized = os.path.normpath(os.path.join(self.root, identifier))
        if not normalized.startswith(self.root.rstrip(os.sep) + os.sep):
            return "", ("'..' climbs out of the images folder" if normalized != self.root
                        else "names the images folder itself, not a file in it")
        folder, name = os.path.split(normalized)
        real_folder = self._real_folders.get(folder)
        if real_folder is None:
            real_folder = self._real_folders[folder] = os.path.realpath(folder)
        real = os.path.join(real_folder, name)
        if os.path.islink(real):
            real = os.path.realpath(real)
        if not self._inside_real_root(real):
            return "", f"symlink resolves outside the images folder (to {real})"
        return normalized, ""
