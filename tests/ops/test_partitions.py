"""A partitioned dataset (`partitions: 3`) verifies and resizes partition by partition, one run per partition, and
its splits combine every partition into exactly what the unpartitioned dataset produces."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ml.partitions import partition_keys, partition_of
from tests.assets.helpers import definitions_for, make_folder_dataset

RESIZE = {"mode": "letterbox", "width": 48, "height": 48, "workers": 1}


@pytest.fixture
def two_views(tmp_path):
    """The same folder declared twice: unpartitioned ('whole') and in three partitions ('parts')."""
    folder = make_folder_dataset(tmp_path / "src", classes=3, per_class=6)
    defs = definitions_for(tmp_path, [
        {"name": "whole", "kind": "image_folder", "source": {"root": str(folder)},
         "resize": RESIZE},
        {"name": "parts", "kind": "image_folder", "source": {"root": str(folder)},
         "resize": RESIZE, "partitions": 3},
    ])
    return tmp_path, defs


def job_keys(defs, name) -> set[str]:
    keys = defs.resolve_job_def(name).asset_layer.executable_asset_keys
    return {k.to_user_string() for k in keys}


def test_partitioned_dataset_runs_partition_by_partition_and_combines_into_the_unpartitioned_result(two_views):
    tmp_path, defs = two_views
    out = tmp_path / "outputs"
    assert job_keys(defs, "parts_partitions") == {"parts/catalog", "parts/verification_report",
                                              "parts/resized"}
    assert job_keys(defs, "parts_combine") == {"parts/splits", "parts/quality_report"}
    prepare = job_keys(defs, "prepare")
    assert "whole/catalog" in prepare and "whole/resized" in prepare
    assert not prepare & {"parts/catalog", "parts/verification_report", "parts/resized",
                          "parts/splits"}

    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("prepare").execute_in_process(instance=instance).success

    partitions = partition_keys(3)
    for done, partition in enumerate(partitions):
        result = defs.resolve_job_def("parts_partitions").execute_in_process(
            instance=instance, partition_key=partition)
        assert result.success
        mats = result.asset_materializations_for_node("parts__resized")
        assert [m.partition for m in mats] == [partition]
        catalog = pd.read_parquet(out / "parts" / "catalog" / f"{partition}.parquet")
        assert catalog["sample_id"].map(lambda s: partition_of(s, 3)).eq(partitions.index(partition)).all()
        verified = pd.read_parquet(out / "parts" / "verification_report" / f"{partition}.parquet")
        assert set(verified["sample_id"]) == set(catalog["sample_id"])   # only its partition's
        assert (out / "parts" / "assets" / f"missing_images_report.{partition}.json").is_file()
        if done < len(partitions) - 1:   # combining before every partition exists names the missing ones
            early = defs.resolve_job_def("parts_combine").execute_in_process(
                instance=instance, raise_on_error=False)
            assert not early.success
            failure = early.get_step_failure_events()[0].event_specific_data.error.message
            assert partitions[-1] in failure and "not been materialized" in failure

    assert defs.resolve_job_def("parts_combine").execute_in_process(instance=instance).success
    per_partition = [len(pd.read_parquet(out / "parts" / "resized" / f"{s}.parquet")) for s in partitions]
    assert sum(per_partition) == 18 and max(per_partition) < 18      # the work really was divided

    whole = pd.read_parquet(out / "whole" / "splits.parquet").sort_values("sample_id")
    parts = pd.read_parquet(out / "parts" / "splits.parquet").sort_values("sample_id")
    columns = ["sample_id", "source_key", "label", "label_index", "split", "width", "height"]
    pd.testing.assert_frame_equal(whole[columns].reset_index(drop=True),
                                  parts[columns].reset_index(drop=True))
    # Each partition resized into its own folder; the same images, byte for byte.
    for w, p in zip(whole["file"], parts["file"]):
        assert Path(w).read_bytes() == Path(p).read_bytes()
        assert "/resized/shard-" in p   # the folder name earlier versions wrote

    # One quality report over every partition: what the unpartitioned dataset reports.
    for name in ("per_class", "flagged"):
        a, b = (pd.read_parquet(out / d / "quality" / f"{name}.parquet") for d in ("whole", "parts"))
        key = [c for c in ("label", "source_key") if c in a.columns]
        assert len(a) and len(a) == len(b)
        pd.testing.assert_frame_equal(
            a.drop(columns=[c for c in a.columns if c in ("row", "file")])
             .sort_values(key).reset_index(drop=True),
            b.drop(columns=[c for c in b.columns if c in ("row", "file")])
             .sort_values(key).reset_index(drop=True))
    pairs = [{tuple(sorted(p)) for p in zip(*(pd.read_parquet(
        out / d / "quality" / "duplicate_pairs.parquet")[c] for c in ("source_key_a", "source_key_b")))}
        for d in ("whole", "parts")]
    assert pairs[0] == pairs[1]

