"""A sharded dataset (`shards: 3`) verifies and resizes shard by shard, one run per shard, and
its splits combine every shard into exactly what the unsharded dataset produces."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ml.shards import shard_keys, shard_of
from tests.assets.helpers import definitions_for, make_folder_dataset

RESIZE = {"mode": "letterbox", "width": 48, "height": 48, "workers": 1}


@pytest.fixture
def two_views(tmp_path):
    """The same folder declared twice: unsharded ('whole') and in three shards ('parts')."""
    folder = make_folder_dataset(tmp_path / "src", classes=3, per_class=6)
    defs = definitions_for(tmp_path, [
        {"name": "whole", "kind": "image_folder", "source": {"root": str(folder)},
         "resize": RESIZE},
        {"name": "parts", "kind": "image_folder", "source": {"root": str(folder)},
         "resize": RESIZE, "shards": 3},
    ])
    return tmp_path, defs


def job_keys(defs, name) -> set[str]:
    keys = defs.resolve_job_def(name).asset_layer.executable_asset_keys
    return {k.to_user_string() for k in keys}


def test_sharded_dataset_runs_shard_by_shard_and_combines_into_the_unsharded_result(two_views):
    tmp_path, defs = two_views
    out = tmp_path / "outputs"
    assert job_keys(defs, "parts_shards") == {"parts/catalog", "parts/verification_report",
                                              "parts/resized"}
    assert job_keys(defs, "parts_combine") == {"parts/splits"}
    prepare = job_keys(defs, "prepare")
    assert "whole/catalog" in prepare and "whole/resized" in prepare
    assert not prepare & {"parts/catalog", "parts/verification_report", "parts/resized",
                          "parts/splits"}

    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("prepare").execute_in_process(instance=instance).success

    shards = shard_keys(3)
    for done, shard in enumerate(shards):
        result = defs.resolve_job_def("parts_shards").execute_in_process(
            instance=instance, partition_key=shard)
        assert result.success
        mats = result.asset_materializations_for_node("parts__resized")
        assert [m.partition for m in mats] == [shard]
        catalog = pd.read_parquet(out / "parts" / "catalog" / f"{shard}.parquet")
        assert catalog["sample_id"].map(lambda s: shard_of(s, 3)).eq(shards.index(shard)).all()
        verified = pd.read_parquet(out / "parts" / "verification_report" / f"{shard}.parquet")
        assert set(verified["sample_id"]) == set(catalog["sample_id"])   # only its shard's
        assert (out / "parts" / "assets" / f"missing_images_report.{shard}.json").is_file()
        if done < len(shards) - 1:   # combining before every shard exists names the missing ones
            early = defs.resolve_job_def("parts_combine").execute_in_process(
                instance=instance, raise_on_error=False)
            assert not early.success
            failure = early.get_step_failure_events()[0].event_specific_data.error.message
            assert shards[-1] in failure and "not been materialized" in failure

    assert defs.resolve_job_def("parts_combine").execute_in_process(instance=instance).success
    per_shard = [len(pd.read_parquet(out / "parts" / "resized" / f"{s}.parquet")) for s in shards]
    assert sum(per_shard) == 18 and max(per_shard) < 18      # the work really was divided

    whole = pd.read_parquet(out / "whole" / "splits.parquet").sort_values("sample_id")
    parts = pd.read_parquet(out / "parts" / "splits.parquet").sort_values("sample_id")
    columns = ["sample_id", "source_key", "label", "label_index", "split", "width", "height"]
    pd.testing.assert_frame_equal(whole[columns].reset_index(drop=True),
                                  parts[columns].reset_index(drop=True))
    # Each shard resized into its own folder; the same images, byte for byte.
    for w, p in zip(whole["file"], parts["file"]):
        assert Path(w).read_bytes() == Path(p).read_bytes()
        assert "/resized/shard-" in p

