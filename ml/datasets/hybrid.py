"""HybridDataset: labels in an HDF5 file, images on disk (seed 000), with the allow-missing
runtime fallback.

Labels: `ids_key` holds the image ids (file = images_dir/<id><extension>), `label_key` the label
of each. Rows whose label (or any `require_labels` value) is null (NaN) are excluded and
counted in `excluded`. Integral numeric labels become int64 class indices, other numbers stay
float32 (regression targets), text labels are indexed in sorted order (`classes`).

Images that are missing or undecodable at training time go through ml.missing.MissingImagePolicy:
- allow_missing=False: ImageError naming the file, and what to do.
- allow_missing=True: the item carries a zeros placeholder with the shape (and dtype, and mask)
  the transform produces for a real image of `image_size`, and its flag is True; the policy
  counts it per file and logs at most once every `log_interval_s`.

Items are the contract items plus the flag as last element: (image, label, missing) or
(image, label, mask, missing). Counting across DataLoader workers: each worker has its own copy
of the policy (counts start from zero there), so the authoritative total is the sum of the
flags the training loop receives (`n_missing += int(batch[-1].sum())`); pass it to
`missing_summary(n_missing)` at the end of training. With num_workers=0 the policy's own counts
(per file, with reasons) are complete too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ml.augmenter import Augmenter
from ml.datasets.pipeline import ImagePipeline, Transform
from ml.errors import ConfigError, PathEscapeError, SourceError
from ml.imageio import load_rgb
from ml.items import FlaggedItem, MaskedFlaggedItem, flagged
from ml.missing import MissingImagePolicy


@dataclass(frozen=True)
class HybridLabels:
    """What the labels file says about the samples used for training."""

    ids: list[str]
    labels: np.ndarray
    classes: list[str] | None
    excluded: int


def _read_array(h5: h5py.File, key: str, path: Path) -> np.ndarray:
    if key not in h5 or not isinstance(h5[key], h5py.Dataset):
        found: list[str] = []
        h5.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
        raise SourceError(f"{path} has no dataset {key!r}; it holds {', '.join(found) or 'none'}")
    return h5[key][()]


def _is_null(values: np.ndarray) -> np.ndarray:
    if np.issubdtype(values.dtype, np.floating):
        return np.isnan(values)
    return np.zeros(len(values), bool)


def _as_text(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.tolist()]


def _label_array(values: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    """(labels, class names): text indexed in sorted order, integral numbers as int64, other
    numbers as float32."""
    if values.dtype.kind in "OSU":
        text = _as_text(values)
        classes = sorted(set(text))
        position = {name: i for i, name in enumerate(classes)}
        return np.array([position[t] for t in text], np.int64), classes
    if values.dtype.kind in "iub" or np.all(values == np.round(values)):
        return values.astype(np.int64), None
    return values.astype(np.float32), None


def read_hybrid_labels(labels_file: Path, ids_key: str, label_key: str,
                       require_labels: Sequence[str]) -> HybridLabels:
    """Image ids and labels of the rows with no null label, aligned."""
    try:
        h5 = h5py.File(labels_file, "r")
    except OSError as exc:
        raise SourceError(f"cannot open {labels_file} as an HDF5 labels file ({exc})") from None
    with h5:
        ids = _read_array(h5, ids_key, labels_file)
        columns = {key: _read_array(h5, key, labels_file) for key in (label_key, *require_labels)}
    for key, values in columns.items():
        if values.ndim != 1 or len(values) != len(ids):
            raise SourceError(f"{labels_file}: {key!r} has shape {values.shape} but there are "
                              f"{len(ids)} image ids; they must be aligned, one value per id")
    keep = ~np.logical_or.reduce([_is_null(v) for v in columns.values()])
    labels, classes = _label_array(columns[label_key][keep])
    ids_kept = [i for i, k in zip(_as_text(ids), keep.tolist()) if k]
    return HybridLabels(ids_kept, labels, classes, int((~keep).sum()))


@dataclass(frozen=True)
class ZerosLike:
    """The kind, shape and dtype of one transform output, to build a zeros placeholder."""

    kind: str                  # "tensor" | "array" | "pil"
    shape: tuple[int, ...]
    dtype: str                 # numpy dtype name, or the PIL mode for "pil"

    @classmethod
    def of(cls, value: Any) -> "ZerosLike":
        if isinstance(value, torch.Tensor):
            return cls("tensor", tuple(value.shape), str(torch.zeros(0, dtype=value.dtype).numpy().dtype))
        if isinstance(value, Image.Image):
            return cls("pil", tuple(np.asarray(value).shape), value.mode)
        array = np.asarray(value)
        return cls("array", array.shape, str(array.dtype))

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.kind == "pil" else np.dtype(self.dtype)

    def wrap(self, zeros: np.ndarray) -> Any:
        """`zeros` (this shape and numpy_dtype) as the output's own type."""
        if self.kind == "tensor":
            return torch.from_numpy(zeros)
        if self.kind == "pil":
            return Image.fromarray(zeros, self.dtype)
        return zeros

    def make(self) -> Any:
        return self.wrap(np.zeros(self.shape, self.numpy_dtype))


NO_PLACEHOLDER = ZerosLike("array", (0,), "uint8")   # never built: without allow_missing the policy raises


class HybridDataset(Dataset):
    """Images at images_dir/<id><extension>, labels from an HDF5 file; see the module docstring.

    `image_size` (height, width) is the size of the decoded images the transform expects; it is
    required with allow_missing, to learn the placeholder's shape from the transform once.
    """

    def __init__(self, labels_file: str | os.PathLike, images_dir: str | os.PathLike, *,
                 label_key: str, ids_key: str = "image_ids", extension: str = ".jpg",
                 require_labels: Sequence[str] = (), transform: Transform | None = None,
                 swap_color_channel: bool = False, augmenter: Augmenter | None = None,
                 allow_missing: bool = False, image_size: tuple[int, int] | None = None,
                 log_interval_s: float = 5.0):
        self.labels_file, self.images_dir = Path(labels_file), Path(images_dir)
        if not self.images_dir.is_dir():
            raise SourceError(f"images folder {self.images_dir} does not exist or is not a "
                              "folder; set the hybrid source's images_dir")
        found = read_hybrid_labels(self.labels_file, ids_key, label_key, require_labels)
        self.paths = np.asarray(self._resolve(found.ids, extension), dtype=str)
        self.labels, self.classes, self.excluded = found.labels, found.classes, found.excluded
        self.pipeline = ImagePipeline(transform, swap_color_channel, augmenter)
        self.policy = MissingImagePolicy(allow_missing, log_interval_s)
        self.placeholder = self._placeholder_template(image_size) if allow_missing else None

    def _resolve(self, ids: list[str], extension: str) -> list[str]:
        """images_dir/<id><extension> for every id; ids that are absolute or climb out with
        '..' are refused. The check is lexical (no filesystem calls, so a million ids take a
        second): symlinks that escape are the prepare job's verification's business."""
        root = os.fspath(self.images_dir)
        paths = []
        for image_id in ids:
            name = image_id + extension
            if not image_id or "\x00" in name or os.path.isabs(name) or ".." in name.split("/"):
                raise PathEscapeError(f"{self.labels_file}: image id {image_id!r} is refused; "
                                      f"ids must name files inside {root} (relative, no '..')")
            paths.append(os.path.join(root, name))
        return paths

    def _placeholder_template(self, image_size: tuple[int, int] | None) -> tuple[ZerosLike, ...]:
        """The shapes of what the transform makes of a black image of `image_size`."""
        if image_size is None or len(image_size) != 2 or min(image_size) < 1:
            raise ConfigError(f"HybridDataset: allow_missing needs image_size=(height, width) of "
                              f"the decoded images, got {image_size!r}; the zeros placeholder "
                              "takes the shape the transform gives such an image")
        height, width = (int(v) for v in image_size)
        output = self.pipeline(Image.new("RGB", (width, height)))
        parts = output if isinstance(output, tuple) and len(output) == 2 else (output,)
        return tuple(ZerosLike.of(part) for part in parts)

    @property
    def num_classes(self) -> int | None:
        if self.classes is not None:
            return len(self.classes)
        return int(self.labels.max()) + 1 if self.labels.dtype == np.int64 and len(self) else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> FlaggedItem | MaskedFlaggedItem:
        path = str(self.paths[index])
        label = self.labels[index]          # float32 labels stay numpy: they collate as float32
        label = int(label) if self.labels.dtype == np.int64 else label
        template = self.placeholder[0] if self.placeholder else NO_PLACEHOLDER
        image, missing = self.policy.load(lambda: load_rgb(path), template.shape, name=path,
                                          dtype=template.numpy_dtype)
        if not missing:
            return flagged(self.pipeline.item(image, label), False)
        output = template.wrap(image)
        if len(self.placeholder) == 2:
            return MaskedFlaggedItem(output, label, self.placeholder[1].make(), True)
        return FlaggedItem(output, label, True)

    def missing_summary(self, flags_total: int | None = None) -> str:
        """One line for the end of training. `flags_total` is the sum of the items' missing
        flags the training loop saw (complete across workers); the policy's per-file detail
        covers only this process (complete when num_workers=0)."""
        local = self.policy.summary()
        if flags_total is None:
            return f"this process: {local}"
        return (f"{int(flags_total)} placeholder image(s) used in training (item flags, all "
                f"workers); this process: {local}")
