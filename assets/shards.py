"""Shard partitions: a dataset declared with `shards: N` (config/datasets.yaml) gets its heavy
assets, catalog, verification_report and resized, partitioned into N shards (ml/shards.py
assigns each sample to one by its stable id). A shard's catalog keeps only its own samples, and
verification and resize of that shard read that catalog partition (the same partitions, so
Dagster maps shard to shard), so no step of a shard holds the whole dataset. A backfill over
the shards runs one independent run per shard, and the Parquet IO manager hands an
unpartitioned downstream asset (splits) every shard's rows concatenated, so everything after
resize sees the whole dataset. Unsharded datasets (the
default, `shards: 1`) have no partitions and behave as before.
"""

from pathlib import Path

import dagster as dg

from ml.dataset_spec import DatasetSpec
from ml.shards import shard_keys

SHARDED_ASSETS = ("catalog", "verification_report", "resized")


def shard_partitions(spec: DatasetSpec) -> dg.StaticPartitionsDefinition | None:
    """The partitions of a sharded dataset's heavy assets; None when it is unsharded. With no
    backfill policy, Dagster's default applies: a backfill launches one run per shard."""
    return dg.StaticPartitionsDefinition(shard_keys(spec.shards)) if spec.shards > 1 else None


def sharded_asset_keys(spec: DatasetSpec) -> list[dg.AssetKey]:
    return [dg.AssetKey([spec.name, a]) for a in SHARDED_ASSETS] if spec.shards > 1 else []


def current_shard(context: dg.AssetExecutionContext) -> str | None:
    return context.partition_key if context.has_partition_key else None


def shard_path(path: Path, shard: str | None) -> Path:
    """`report.json` -> `report.<shard>.json` for a shard; unchanged when unsharded."""
    return path if shard is None else path.with_name(f"{path.stem}.{shard}{path.suffix}")


def shard_folder(folder: Path, shard: str | None) -> Path:
    """A shard's own output folder (`resized/shard-03`), so shards never share a manifest."""
    return folder if shard is None else folder / f"shard-{shard}"
