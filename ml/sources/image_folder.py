"""Image folder source: one subfolder per class or identity (torchvision ImageFolder layout).

Options: the `source:` section's model below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

from pydantic import Field

from ml.errors import SourceError
from ml.options import Options
from ml.safe_paths import InsideRoot
from ml.sources.kind import Extension, Location, SourceKind
from ml.sources.record import IMAGE_EXTENSIONS, SourceRecord, require_dir

if TYPE_CHECKING:
    from ml.dataset_spec import DatasetSpec

LabelsAre = Literal["class", "identity"]
LABELS_ARE = "class: each label is a class; identity: each label is an identity (identities group samples for identity splits)"


class ImageFolderSource(Options):
    """`kind: image_folder`: one subfolder per class or identity (torchvision's ImageFolder)."""

    root: Location = Field(description="The folder holding `root/<label>/<image>`")
    labels_are: LabelsAre = Field("class", description=LABELS_ARE)
    extensions: Optional[list[Extension]] = Field(None, description="The image files' extensions, e.g. [.jpg, .png] (null: the common image extensions)")


def label_folders(root: Path) -> list[str]:
    """The label subfolders of `root`: sorted; hidden and symlinked folders are not labels."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False)
                  and not e.name.startswith("."))


def folder_images(root: Path, labels: list[str], extensions: Sequence[str]
                  ) -> Iterator[tuple[str, str, str, str]]:
    """(label, file name, path, why refused) of every image of `root/<label>/`, names sorted per
    label, hidden files and other extensions skipped. A symlinked file is read only when it
    stays inside the root (`why` says otherwise, and `path` is then ''): the one rule of both
    the catalog's source reader and ImageFolderDataset."""
    inside = InsideRoot(root)          # folders' real paths resolved once
    suffixes = tuple(e.lower() for e in extensions)
    for label in labels:
        entries = sorted((e.name, e.is_symlink()) for e in os.scandir(root / label)
                         if not e.name.startswith(".") and e.name.lower().endswith(suffixes)
                         and (e.is_file() or e.is_symlink()))
        for name, is_link in entries:
            path, why = inside.listed(label, name, is_link)
            yield label, name, path, why


def read_image_folder(spec: DatasetSpec) -> Iterator[SourceRecord]:
    root = require_dir(spec.source_path("root"), "source.root", spec.name)
    identity = spec.source.labels_are == "identity"
    classes = label_folders(root)
    if not classes:
        raise SourceError(f"dataset {spec.name!r}: {root} has no class subfolders; an image "
                          "folder source needs root/<label>/<image> (one subfolder per class)")
    images = folder_images(root, classes, spec.source.extensions or IMAGE_EXTENSIONS)
    for index, (label, name, path, why) in enumerate(images):
        yield SourceRecord(source_key=f"{label}/{name}", path=path, label=label,
                           group_id=label if identity else "",
                           group_kind="identity" if identity else "none",
                           index_in_source=index, invalid_reason=why)


KIND = SourceKind("image_folder", ImageFolderSource, read_image_folder, images_option="root")
