"""The augmented-sample grid: layout, masks drawn where the medical mask went, determinism."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ml.errors import ConfigError
from ml.formats.insightface_rec import write_insightface_legacy
from ml.sample_grid import CAPTION_HEIGHT, GAP, augmented_sample_grid, grid_size
from ml.transforms import CASIA_REFERENCE_POINTS

SIDE = 112


@pytest.fixture(scope="module")
def rec_dir(tmp_path_factory):
    """A legacy .rec of 24 noise JPEGs of 112x112, 6 identities."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(24):
        buffer = io.BytesIO()
        pixels = rng.integers(60, 200, (SIDE, SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        items.append((buffer.getvalue(), i // 4))
    folder = tmp_path_factory.mktemp("grid") / "rec"
    write_insightface_legacy(folder, items)
    return folder


def mask_tiles(png: bytes, count: int, columns: int) -> list[np.ndarray]:
    """The mask tile of each cell, cut out of the decoded PNG (grayscale)."""
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    tiles = []
    for position in range(count):
        row, column = divmod(position, columns)
        x = GAP + column * (2 * SIDE + 2 * GAP) + SIDE + GAP
        y = GAP + row * (SIDE + CAPTION_HEIGHT + GAP)
        tiles.append(picture[y:y + SIDE, x:x + SIDE])
    return tiles


def test_grid_shows_each_sample_beside_its_mask(rec_dir):
    grid = augmented_sample_grid(rec_dir, count=10, columns=4, seed=1, mask_prob=1.0)
    picture = Image.open(io.BytesIO(grid.png))
    assert picture.format == "PNG" and picture.size == grid.size
    assert grid.size == grid_size(10, 4, (SIDE, SIDE)) == (4 + 4 * 232, 4 + 3 * 130)
    assert len(grid.indices) == len(set(grid.indices)) == 10
    assert grid.labels == tuple(i // 4 for i in grid.indices)
    nose, left, right = CASIA_REFERENCE_POINTS
    mouth_x, mouth_y = round((left[0] + right[0]) / 2), round((left[1] + right[1]) / 2)
    for tile, share in zip(mask_tiles(grid.png, 10, 4), grid.occluded):
        # the mask covers the mouth (a flipped sample has it mirrored) and spares the eyes
        assert min(tile[mouth_y, mouth_x], tile[mouth_y, SIDE - 1 - mouth_x]) < 64
        assert (tile[:40] > 190).all()
        assert share == pytest.approx((tile < 128).mean(), abs=0.02)
        assert 0.1 < share < 0.6


def test_without_occlusion_every_mask_is_white(rec_dir):
    grid = augmented_sample_grid(rec_dir, count=6, columns=3, seed=1, mask_prob=0.0)
    assert grid.occluded == (0.0,) * 6
    assert all((tile > 190).all() for tile in mask_tiles(grid.png, 6, 3))


def test_same_seed_same_picture(rec_dir):
    first = augmented_sample_grid(rec_dir, count=8, seed=5)
    again = augmented_sample_grid(rec_dir, count=8, seed=5)
    other = augmented_sample_grid(rec_dir, count=8, seed=6)
    assert first.png == again.png
    assert other.png != first.png
    assert 0 < sum(share > 0 for share in first.occluded) < 8     # mask_prob 0.5


def test_more_samples_than_images_shows_each_once_and_bad_counts_are_refused(rec_dir):
    grid = augmented_sample_grid(rec_dir, count=40, columns=8, seed=0)
    assert sorted(grid.indices) == list(range(24))
    assert grid.size == grid_size(24, 8, (SIDE, SIDE))
    with pytest.raises(ConfigError, match="count 0: input should be greater than or equal to 1"):
        augmented_sample_grid(rec_dir, count=0)
