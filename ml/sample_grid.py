"""A picture of what training sees: augmented samples next to their occlusion masks.

Seed 002 saved sample images for debugging; this renders the same check as one PNG. Each cell
shows a training sample as the DataLoader would deliver it (RecordIODataset + Augmenter +
face_train_transform with uint8 output, as the face trainer uses it), then its occlusion mask (white visible,
black occluded), with the sample's label and what happened to it underneath. Samples and every
random draw come from `seed`, so the same seed gives the same PNG.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Annotated, Sequence

import numpy as np
from PIL import Image, ImageDraw

from pydantic import Field

from ml.errors import ConfigError
from ml.formats.handles import RecordIOHandle
from ml.options import Float, Int, Options

CAPTION_HEIGHT = 14       # pixels under each cell for its caption
GAP = 4                   # pixels between the image and its mask, and around cells
BACKGROUND = (218, 218, 218)     # grey, so that an all-visible (white) mask stands out
CAPTION_COLOUR = (40, 40, 40)
SEED_002_AUGMENTATION = {"crop_augmentation_prob": 0.1, "photometric_augmentation_prob": 0.3,
                         "low_res_augmentation_prob": 0.2}   # seed 002's standard training


Probability = Annotated[Float, Field(ge=0.0, le=1.0)]


class SampleGridOptions(Options):
    """What the augmented-samples grid shows (the asset's run config)."""

    count: Annotated[Int, Field(ge=1)] = Field(16, description="Samples to show")
    columns: Annotated[Int, Field(ge=1)] = Field(4, description="Cells per row")
    seed: Int = Field(0, description="Seed of the samples and of every random draw")
    mask_prob: Probability = Field(0.5, description="Probability of the medical-mask occlusion")
    flip_prob: Probability = Field(0.5, description="Probability of the horizontal flip")


@dataclass(frozen=True)
class SampleGrid:
    """The rendered grid (PNG bytes) and what it shows."""

    png: bytes
    size: tuple[int, int]          # (width, height) of the picture
    indices: tuple[int, ...]       # dataset items shown, in grid order
    labels: tuple[int, ...]
    occluded: tuple[float, ...]    # fraction of each sample's mask that is occluded


def grid_size(count: int, columns: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of a grid of `count` cells of (image, mask) pairs of `image_size`."""
    width, height = image_size
    rows = -(-count // columns)
    cell_w, cell_h = 2 * width + GAP, height + CAPTION_HEIGHT
    return (GAP + min(count, columns) * (cell_w + GAP), GAP + rows * (cell_h + GAP))


def render_grid(items: Sequence[tuple[np.ndarray, np.ndarray, str]], columns: int) -> Image.Image:
    """Cells of (image HWC uint8, mask HW uint8, caption); a mask of another size than its image
    (a feature-map mask) is scaled up to it with nearest-neighbour sampling."""
    height, width = items[0][0].shape[:2]
    canvas = Image.new("RGB", grid_size(len(items), columns, (width, height)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for position, (image, mask, caption) in enumerate(items):
        row, column = divmod(position, columns)
        x = GAP + column * (2 * width + GAP + GAP)
        y = GAP + row * (height + CAPTION_HEIGHT + GAP)
        canvas.paste(Image.fromarray(image, "RGB"), (x, y))
        mask_picture = Image.fromarray(mask, "L")
        if mask_picture.size != (width, height):
            mask_picture = mask_picture.resize((width, height), Image.Resampling.NEAREST)
        canvas.paste(mask_picture.convert("RGB"), (x + width + GAP, y))
        draw.text((x, y + height + 1), caption, fill=CAPTION_COLOUR)
    return canvas


def sample_indices(length: int, count: int, seed: int) -> list[int]:
    """`count` distinct items of a dataset of `length`, drawn with `seed`, in ascending order."""
    if length < 1:
        raise ConfigError("augmented sample grid: the dataset has no images")
    chosen = np.random.default_rng(seed).choice(length, size=min(count, length), replace=False)
    return sorted(int(i) for i in chosen)


def augmented_sample_grid(source: RecordIOHandle | str | os.PathLike,
                          augmentation: dict[str, float] | None = None,
                          **options: object) -> SampleGrid:
    """Render `count` training samples of a RecordIO face dataset with their masks; `options`
    are SampleGridOptions' (count, columns, seed, mask_prob, flip_prob; a bad one is a
    ConfigError).

    The samples go through what face training applies: Augmenter(**augmentation) (seed 002's
    standard probabilities by default) and face_train_transform(mask_prob, flip_prob), both
    seeded from `seed`.
    """
    from ml.augmenter import Augmenter                  # torch: not when the options load
    from ml.datasets.recordio import RecordIODataset
    from ml.transforms import face_train_transform, seed_offset

    grid = SampleGridOptions(**options)
    count, columns, seed = grid.count, grid.columns, grid.seed
    mask_prob, flip_prob = grid.mask_prob, grid.flip_prob
    augmenting = dict(SEED_002_AUGMENTATION, **(augmentation or {}))
    dataset = RecordIODataset(
        source, face_train_transform(mask_prob=mask_prob, flip_prob=flip_prob, uint8_output=True,
                                     seed=seed_offset(seed, 10)),
        augmenter=Augmenter(**augmenting, seed=seed_offset(seed, 20)))
    indices = sample_indices(len(dataset), count, seed)
    cells, labels, occluded = [], [], []
    for index in indices:
        image, label, mask = dataset[index]      # uint8 [3, H, W] and [1, H, W] (255 visible)
        mask_pixels = mask[0].numpy()
        share = float((mask_pixels < 128).mean())
        cells.append((image.permute(1, 2, 0).numpy(), mask_pixels,
                      f"#{index} id {label}" + (f" {share:.0%} masked" if share else "")))
        labels.append(int(label))
        occluded.append(share)
    picture = render_grid(cells, min(columns, len(cells)))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return SampleGrid(buffer.getvalue(), picture.size, tuple(indices), tuple(labels),
                      tuple(occluded))

