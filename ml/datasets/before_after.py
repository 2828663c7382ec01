"""BeforeAfterPairs: (before, after) image tensors of one split of a before/after manifest
(seed 004), for image-to-image training.

The manifest is the prepare job's split table: one row per image with `group_id` (the pair),
`role` ('before' or 'after'), `file` (the resized image) and `split`. A pair missing one of its
images (dropped by verification) is left out and counted in `incomplete`. Items are float
tensors in [0, 1], (3, H, W); training may take the same random crop of both images and flip
both together.
"""

from __future__ import annotations

import pandas as pd
from torch.utils.data import Dataset

from ml.errors import ConfigError, DatasetError
from ml.imageio import load_rgb
from ml.items import BeforeAfterItem
from ml.transforms import WorkerRandom, image_to_tensor

MANIFEST_COLUMNS = ("group_id", "role", "file", "split")


def pair_table(manifest: pd.DataFrame, split: str) -> tuple[pd.DataFrame, int]:
    """(one row per complete pair of `split`: group_id, before, after; number of incomplete
    pairs left out)."""
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ConfigError(f"before/after manifest lacks column(s) {missing}; pass the splits "
                          "table of a before_after dataset (columns group_id, role, file, split)")
    rows = manifest.loc[(manifest["split"] == split) & manifest["role"].isin(["before", "after"])]
    wide = rows.pivot_table(index="group_id", columns="role", values="file", aggfunc="first")
    wide = wide.reindex(columns=["before", "after"])
    complete = wide.dropna()
    table = complete.reset_index()[["group_id", "before", "after"]]
    return table.sort_values("group_id", ignore_index=True), len(wide) - len(complete)


class BeforeAfterPairs(Dataset):
    """(before, after) of each complete pair of `split` of `manifest`; with `crop` (width,
    height) a random window of that size, the same in both images, and with `flip` a random
    horizontal flip of both."""

    def __init__(self, manifest: pd.DataFrame, split: str,
                 crop: tuple[int, int] | None = None, flip: bool = False,
                 seed: int | None = None):
        self.table, self.incomplete = pair_table(manifest, split)
        if self.table.empty:
            raise DatasetError(f"before/after manifest: split {split!r} has no complete pair "
                               f"(splits present: {sorted(manifest['split'].unique())})")
        self.split = split
        self.before = self.table["before"].to_numpy(dtype=str)
        self.after = self.table["after"].to_numpy(dtype=str)
        self.crop = crop
        self.flip = flip
        self.random = WorkerRandom(seed)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> BeforeAfterItem:
        before = image_to_tensor(load_rgb(self.before[index]))
        after = image_to_tensor(load_rgb(self.after[index]))
        if before.shape != after.shape:
            raise DatasetError(f"{self.before[index]} is {before.shape[2]}x{before.shape[1]} but "
                               f"its after image {self.after[index]} is {after.shape[2]}x"
                               f"{after.shape[1]}; resize both to one size")
        rng = self.random.get()
        if self.crop is not None:
            width, height = self.crop
            if width > before.shape[2] or height > before.shape[1]:
                raise ConfigError(f"crop {width}x{height} is larger than the image "
                                  f"{before.shape[2]}x{before.shape[1]} ({self.before[index]})")
            x = rng.randrange(before.shape[2] - width + 1)
            y = rng.randrange(before.shape[1] - height + 1)
            before = before[:, y:y + height, x:x + width]
            after = after[:, y:y + height, x:x + width]
        if self.flip and rng.random() < 0.5:
            before, after = before.flip(-1), after.flip(-1)
        return BeforeAfterItem(before, after)
