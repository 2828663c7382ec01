"""A picture of the corrupt images verification found: what of each can still be decoded.

A truncated JPEG usually decodes to its top rows (the rest grey), a damaged one to a smear; the
picture shows a person at once whether a file is cut short, garbage or a mislabelled format.
Up to GALLERY_IMAGES corrupt files that are plain files (not archive members), each captioned
with its name and the reason verification gave. Files with nothing decodable are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFile

from ml.eval.pictures import image_grid_picture
from ml.sample_status import CORRUPT

GALLERY_IMAGES = 16
GALLERY_COLUMNS = 4
THUMBNAIL_SIDE = 160
CANDIDATES = 64               # corrupt files tried for the 16 shown
MAX_PIXELS = 50_000_000       # a header claiming more is not decoded for a thumbnail


def partial_image(path: str, side: int = THUMBNAIL_SIDE) -> np.ndarray | None:
    """What of the image at `path` decodes (truncated data allowed), as an RGB thumbnail; None
    when nothing does."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                return None
            image.draft("RGB", (side, side))
            previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = True
            try:
                image.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
            thumbnail = image.convert("RGB")
            thumbnail.thumbnail((side, side))
            return np.asarray(thumbnail)
    except Exception:       # noqa: BLE001 - any decoder failure means "nothing to show"
        return None


def corrupt_gallery(table: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Draw the gallery of `table`'s corrupt, used, plain-file samples to `path` (PNG, atomic);
    None (and no file) when none of them decodes at all."""
    is_corrupt = (table["status"] == CORRUPT).to_numpy()
    if not is_corrupt.any():                 # the common case, without the other tests
        return None
    corrupt = table.loc[is_corrupt & table["used"].to_numpy(bool)
                        & (table["path"] != "").to_numpy()
                        & (table["member"] == "").to_numpy()].head(CANDIDATES)
    shown: list[tuple[np.ndarray, str]] = []
    for file, key, reason in zip(corrupt["path"], corrupt["source_key"], corrupt["reason"]):
        pixels = partial_image(file)
        if pixels is not None:
            shown.append((pixels, f"{str(key)[-32:]}: {str(reason)[:20]}"))
        if len(shown) == GALLERY_IMAGES:
            break
    if not shown:
        return None
    rows = [shown[i:i + GALLERY_COLUMNS] for i in range(0, len(shown), GALLERY_COLUMNS)]
    return image_grid_picture([[p for p, _ in row] for row in rows], [], path, title,
                              captions=[[c for _, c in row] for row in rows])
