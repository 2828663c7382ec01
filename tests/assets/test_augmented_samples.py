"""`<dataset>/augmented_samples`: materialized over a small RecordIO-packed dataset, the PNG grid
is saved under the dataset's output folder, shown in the asset's markdown and shows the masks."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from assets.metadata import INLINE_IMAGE_BYTES
from ml.sample_grid import CAPTION_HEIGHT, GAP, grid_size
from tests.assets.helpers import (definitions_for, make_folder_dataset, materialization_metadata,
                                  materialize_all)

SIDE = 112


@pytest.mark.slow
def test_augmented_samples_png_is_saved_shown_and_shows_the_masks(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=4, per_class=6)
    defs = definitions_for(tmp_path, [
        {"name": "ids", "kind": "image_folder",
         "source": {"root": str(folder), "labels_are": "identity"},
         "resize": {"mode": "shorter_side_crop", "width": SIDE, "height": SIDE, "workers": 1},
         "splits": {"ratios": [0.8, 0.1, 0.1]},
         "formats": {"recordio": {}}},
        {"name": "plain", "kind": "image_folder", "source": {"root": str(folder)}},
    ])
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "ids/augmented_samples" in keys and "plain/augmented_samples" not in keys

    run_config = {"ops": {"ids__augmented_samples": {"config": {"count": 6, "columns": 3,
                                                                "mask_prob": 1.0}}}}
    result = materialize_all(defs, selection=dg.AssetSelection.groups("ids"), run_config=run_config)
    meta = materialization_metadata(result, ["ids", "augmented_samples"])

    path = Path(meta["path"])
    assert path == tmp_path / "outputs" / "ids" / "augmented_samples" / "augmented_samples.png"
    assert not list(path.parent.glob(".*tmp*")), "written atomically, no temporary left"
    first_png = path.read_bytes()
    picture = Image.open(path)
    assert picture.format == "PNG" and picture.size == grid_size(6, 3, (SIDE, SIDE))
    assert meta["samples"] == 6 and meta["masked_samples"] == 6
    inline = base64.b64decode(meta["preview"].split(";base64,")[1].rstrip(")"))
    shown = Image.open(io.BytesIO(inline))         # the PNG itself, or a JPEG within budget
    assert inline == path.read_bytes() or len(inline) <= INLINE_IMAGE_BYTES
    assert abs(shown.width / shown.height - picture.width / picture.height) < 0.02

    gray = np.asarray(picture.convert("L"))
    for position in range(6):
        row, column = divmod(position, 3)
        x = GAP + column * (2 * SIDE + 2 * GAP) + SIDE + GAP
        y = GAP + row * (SIDE + CAPTION_HEIGHT + GAP)
        mask = gray[y:y + SIDE, x:x + SIDE]
        assert (mask[:40] > 190).all(), "eyes visible"
        assert 0.1 < (mask < 128).mean() < 0.6, "nose, mouth and chin occluded"

    again = materialize_all(defs, selection=dg.AssetSelection.assets(["ids", "augmented_samples"]),
                            run_config=run_config)
    assert again.success and path.read_bytes() == first_png      # same seed, same PNG
    assert Image.open(io.BytesIO(path.read_bytes())).size == picture.size
