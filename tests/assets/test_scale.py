"""At scale in the suite: seed 000's layout with 200,000 ids (above pyarrow's 131,072-row chunk
size, so every column read back from Parquet is chunked) goes through the catalog and the
verification report from a real materialization, with exact counts."""

from __future__ import annotations

import os

import h5py
import numpy as np

from tests.assets.helpers import (
    definitions_for,
    materialization_metadata,
    materialize_all,
    write_jpeg,
)

N, MISSING, IDENTITIES = 200_000, 300, 20_000


def test_catalog_and_verification_of_200k_ids_count_exactly(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    seeds = [write_jpeg(tmp_path / f"seed{k}.jpg", size=(32, 32), colour=(60 * k, 90, 40))
             for k in range(4)]                  # hard links: at most 65,000 per file (ext4)
    missing = set(np.linspace(0, N - 1, MISSING).astype(int).tolist())
    ids = [f"img_{i:07d}" for i in range(N)]
    for i, image_id in enumerate(ids):
        if i not in missing:
            os.link(seeds[i % 4], images / f"{image_id}.jpg")
    with h5py.File(tmp_path / "labels.h5", "w") as h5:
        h5["image_ids"] = np.array(ids, dtype="S")
        h5["labels/identity"] = (np.arange(N) % IDENTITIES).astype("int64")
    defs = definitions_for(tmp_path, [{
        "name": "big", "kind": "hybrid",
        "source": {"labels_file": str(tmp_path / "labels.h5"), "images_dir": str(images),
                   "label_key": "labels/identity", "labels_are": "identity"},
        "verify": {"level": "exists", "max_missing_count": 1000},
    }])
    result = materialize_all(defs, selection=["big/catalog", "big/verification_report"])
    catalog = materialization_metadata(result, ["big", "catalog"])
    assert catalog["samples"] == N and catalog["status_ok"] == N - MISSING
    assert catalog["status_missing"] == MISSING and catalog["labels"] == IDENTITIES
    report = materialization_metadata(result, ["big", "verification_report"])
    assert report["total_images_checked"] == N and report["missing_count"] == MISSING
    assert report["corrupt_count"] == 0 and report["passed"]
