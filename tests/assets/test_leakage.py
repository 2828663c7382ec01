"""Duplicates across splits: the splits keep each duplicate group in one split, and the blocking
check `no_leakage_across_splits` stops packing when copies do cross (or, with keep_in_train,
takes the val/test copies out)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.assets.helpers import definitions_for, materialization_metadata, materialize_all

PLANTED = 6          # copies: three byte-identical, three re-encoded (near duplicates)


def textured(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).resize(
        (128, 96), Image.Resampling.BICUBIC).save(path, "JPEG", quality=92)


def leaky_dataset(tmp_path: Path, **splits) -> dict:
    root = tmp_path / "src" / "things"
    for c in range(3):
        for i in range(8):
            textured(root / f"class_{c}" / f"{i:02d}.jpg", seed=100 * c + i)
    for i in range(PLANTED):
        original = root / f"class_{i % 3}" / f"{i:02d}.jpg"
        copy = root / f"class_{i % 3}" / f"copy_{i:02d}.jpg"
        if i < 3:
            shutil.copyfile(original, copy)                       # the same bytes
        else:
            buf = io.BytesIO()
            Image.open(original).save(buf, "JPEG", quality=60)    # re-encoded
            copy.write_bytes(buf.getvalue())
    return {"name": "things", "kind": "image_folder", "source": {"root": str(root)},
            "resize": {"mode": "letterbox", "width": 64, "height": 64, "workers": 1},
            "formats": {"tfrecords": {}},
            "splits": {"ratios": [0.5, 0.25, 0.25], **splits}}


def checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def planted_splits(tmp_path: Path) -> list[tuple[str, str]]:
    frame = pd.read_parquet(tmp_path / "outputs" / "things" / "splits.parquet")
    where = dict(zip(frame["source_key"], frame["split"]))
    return [(where.get(f"class_{i % 3}/{i:02d}.jpg"), where.get(f"class_{i % 3}/copy_{i:02d}.jpg"))
            for i in range(PLANTED)]


def test_duplicates_stay_in_one_split_by_default(tmp_path):
    result = materialize_all(definitions_for(tmp_path, [leaky_dataset(tmp_path)]))
    gate = checks(result)["no_leakage_across_splits"]
    assert gate.passed, gate.description
    assert all(a == b for a, b in planted_splits(tmp_path))
    meta = materialization_metadata(result, ["things", "splits"])
    assert meta["duplicate_pairs"] >= PLANTED and meta["duplicate_pairs_across_splits"] == 0


def test_copies_across_splits_stop_packing(tmp_path):
    dataset = leaky_dataset(tmp_path, group_duplicates=False)
    result = materialize_all(definitions_for(tmp_path, [dataset]), raise_on_error=False)
    gate = checks(result)["no_leakage_across_splits"]
    crossing = [(a, b) for a, b in planted_splits(tmp_path) if a != b]
    assert crossing, "the seed puts some copies in another split than their original"
    assert not gate.passed and f"{len(crossing)} duplicate pair(s) across splits" in gate.description
    assert "copy_" in gate.description
    assert not result.asset_materializations_for_node("things__tfrecords"), "packing is blocked"
    table = pd.read_parquet(tmp_path / "outputs" / "things" / "splits_leakage.parquet")
    assert len(table) == len(crossing) and set(table["kind"]) <= {"exact", "near"}


def test_keep_in_train_takes_the_copies_out_of_val_and_test(tmp_path):
    dataset = leaky_dataset(tmp_path, group_duplicates=False, leakage="keep_in_train")
    result = materialize_all(definitions_for(tmp_path, [dataset]))
    gate = checks(result)["no_leakage_across_splits"]
    assert gate.passed and "taken out of the splits" in gate.description
    meta = materialization_metadata(result, ["things", "splits"])
    assert meta["dropped_for_leakage"] >= 1
    for a, b in planted_splits(tmp_path):
        assert a is None or b is None or a == b, "no pair left across splits"
    assert result.asset_materializations_for_node("things__tfrecords"), "packing went on"
    assert (tmp_path / "src" / "things" / "class_0" / "copy_00.jpg").exists(), "sources untouched"


def test_a_bad_policy_or_threshold_is_named_when_definitions_load(tmp_path):
    from ml.errors import ConfigError
    with pytest.raises(ConfigError, match="leakage 'drop'"):
        definitions_for(tmp_path, [leaky_dataset(tmp_path, leakage="drop")])
    with pytest.raises(ConfigError, match="quality.near_duplicate_distance"):
        definitions_for(tmp_path, [dict(leaky_dataset(tmp_path),
                                        quality={"near_duplicate_distance": 40})])
    with pytest.raises(ConfigError, match="quality.blurry"):
        definitions_for(tmp_path, [dict(leaky_dataset(tmp_path), quality={"blurry": 2})])
