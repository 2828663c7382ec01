"""ImageFolderDataset: images on disk, `root/<class>/<image>` or a split manifest (seed 002's
CustomImageFolderDataset).

Two ways in: a folder tree (classes are the sorted subfolder names, as torchvision's ImageFolder)
or a split manifest DataFrame from the prepare job (columns `file` and `label_index`, and `label`
for the class names when present). Paths and labels are held as numpy arrays, not lists of
Python objects, so DataLoader workers forked from a large dataset do not copy it page by page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from torch.utils.data import Dataset

from ml.augmenter import Augmenter
from ml.datasets.pipeline import ImagePipeline, Transform
from ml.errors import ConfigError, DatasetError, SourceError
from ml.imageio import load_rgb
from ml.sources.image_folder import folder_images, label_folders
from ml.sources.record import IMAGE_EXTENSIONS


def list_image_folder(root: Path, extensions: Sequence[str]) -> tuple[list[str], list[str], list[int]]:
    """(classes, files, labels) of `root/<class>/<image>` as the catalog's image-folder source
    lists it (ml/sources/image_folder.py: classes sorted, files sorted per class, hidden entries
    and other extensions skipped, a symlink leaving the root not read)."""
    if not root.is_dir():
        raise SourceError(f"{root} does not exist or is not a folder; an image folder dataset "
                          "needs root/<class>/<image>")
    classes = label_folders(root)
    files: list[str] = []
    labels: list[int] = []
    index = {name: i for i, name in enumerate(classes)}
    for label, _, path, why in folder_images(root, classes, extensions):
        if not why:
            files.append(path)
            labels.append(index[label])
    if not files:
        raise SourceError(f"{root} holds no images with extensions {list(extensions)} in class "
                          "subfolders; expected root/<class>/<image>")
    return classes, files, labels


def manifest_classes(frame: pd.DataFrame, labels: np.ndarray, label_column: str,
                     name_column: str) -> list[str]:
    """Class names by label index: the manifest's `name_column` where it has one, else the
    index as text."""
    count = int(labels.max()) + 1
    names = [str(i) for i in range(count)]
    if name_column in frame.columns:
        pairs = frame[[label_column, name_column]].drop_duplicates()
        for index, name in zip(pairs[label_column].tolist(), pairs[name_column].tolist()):
            names[int(index)] = str(name)
    return names


class ImageFolderDataset(Dataset):
    """Images from files with integer labels; items follow ml.datasets.pipeline's contract.

    `samples` is an array of file paths, `labels` the int64 class index of each, `classes` the
    class names by index (build samplers from `labels`: no image is opened for that).
    """

    def __init__(self, root: str | os.PathLike, transform: Transform | None = None, *,
                 swap_color_channel: bool = False, augmenter: Augmenter | None = None,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS):
        classes, files, labels = list_image_folder(Path(root), extensions)
        self._init(files, np.asarray(labels, np.int64), classes,
                   ImagePipeline(transform, swap_color_channel, augmenter))
        self.root = Path(root)

    @classmethod
    def from_manifest(cls, manifest: pd.DataFrame | str | os.PathLike,
                      transform: Transform | None = None, *, swap_color_channel: bool = False,
                      augmenter: Augmenter | None = None, file_column: str = "file",
                      label_column: str = "label_index",
                      name_column: str = "label") -> "ImageFolderDataset":
        """A dataset over a split manifest (a DataFrame, or the path of its Parquet file).

        Every row needs a file and a label index >= 0; unlabeled rows (index -1) are refused
        rather than trained on as class -1.
        """
        frame = manifest if isinstance(manifest, pd.DataFrame) else pd.read_parquet(manifest)
        missing = [c for c in (file_column, label_column) if c not in frame.columns]
        if missing:
            raise ConfigError(f"split manifest lacks column(s) {missing}; it has "
                              f"{list(frame.columns)[:12]}")
        if frame.empty:
            raise DatasetError("split manifest has no rows: nothing to train on")
        labels = frame[label_column].to_numpy(np.int64)
        if (labels < 0).any():
            first = frame.loc[labels < 0, file_column].iloc[0]
            raise DatasetError(f"split manifest has {int((labels < 0).sum())} unlabeled row(s) "
                               f"(label index -1, e.g. {first}); filter them out or label them "
                               "before training a classifier")
        self = cls.__new__(cls)
        self._init(frame[file_column].astype(str).tolist(), labels,
                   manifest_classes(frame, labels, label_column, name_column),
                   ImagePipeline(transform, swap_color_channel, augmenter))
        self.root = None
        return self

    def _init(self, files: list[str], labels: np.ndarray, classes: list[str],
              pipeline: ImagePipeline) -> None:
        self.samples = np.asarray(files, dtype=str)
        self.labels = labels
        self.classes = classes
        self.class_to_idx = {name: i for i, name in enumerate(classes)}
        self.pipeline = pipeline

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        path = str(self.samples[index])
        return self.pipeline.item(load_rgb(path), int(self.labels[index]))
