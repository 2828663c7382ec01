"""Dataset partitions: a dataset declared with `partitions: N` (config/datasets.yaml) gets its
heavy assets, catalog, verification_report and resized, partitioned into N Dagster partitions
(ml/partitions.py assigns each sample to one by its stable id). A partition's catalog keeps
only its own samples, and verification and resize of that partition read that catalog
partition (the same partition keys, so Dagster maps one to the other), so no step holds the
whole dataset. A backfill over the partitions runs one independent run per partition, and the
Parquet IO manager hands an unpartitioned downstream asset (splits) every partition's rows
concatenated, so everything after resize sees the whole dataset. Unpartitioned datasets (the
default, `partitions: 1`) have no partitions.

("Shards" are TFRecord files only: ml/formats/tfrecord/.)
"""

from pathlib import Path

import dagster as dg

from ml.dataset_spec import DatasetSpec
from ml.partitions import partition_keys

PARTITIONED_ASSETS = ("catalog", "verification_report", "resized")


def dataset_partitions(spec: DatasetSpec) -> dg.StaticPartitionsDefinition | None:
    """The partitions of a partitioned dataset's heavy assets; None when it is unpartitioned.
    With no backfill policy, Dagster's default applies: a backfill launches one run per
    partition."""
    if spec.partitions == 1:
        return None
    return dg.StaticPartitionsDefinition(partition_keys(spec.partitions))


def partitioned_asset_keys(spec: DatasetSpec) -> list[dg.AssetKey]:
    return [dg.AssetKey([spec.name, a]) for a in PARTITIONED_ASSETS] if spec.partitions > 1 else []


def current_partition(context: dg.AssetExecutionContext) -> str | None:
    return context.partition_key if context.has_partition_key else None


def partition_path(path: Path, partition: str | None) -> Path:
    """`report.json` -> `report.<partition>.json` for a partition; unchanged when unpartitioned."""
    return path if partition is None else path.with_name(f"{path.stem}.{partition}{path.suffix}")


def partition_folder(folder: Path, partition: str | None) -> Path:
    """A partition's own output folder, so partitions never share a manifest: `resized/shard-03`
    (the name earlier versions wrote, kept so that an upgrade finds its resized images)."""
    return folder if partition is None else folder / f"shard-{partition}"
