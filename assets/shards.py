"""Shard partitions: a dataset declared with `shards: N` (config/datasets.yaml) gets its heavy
assets, verification_report and resized, partitioned into N shards (ml/shards.py assigns each
sample to one by its stable id). A backfill over the shards runs one independent run per shard,
and the Parquet IO manager hands an unpartitioned downstream asset (splits) every shard's rows
concatenated, so everything after resize sees the whole dataset. Unsharded datasets (the
default, `shards: 1`) have no partitions and behave as before.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from ml.dataset_spec import DatasetSpec
from ml.shards import rows_in_shard, shard_keys

SHARDED_ASSETS = ("verification_report", "resized")


def shard_partitions(spec: DatasetSpec) -> dg.StaticPartitionsDefinition | None:
    """The partitions of a sharded dataset's heavy assets; None when it is unsharded. With no
    backfill policy, Dagster's default applies: a backfill launches one run per shard."""
    return dg.StaticPartitionsDefinition(shard_keys(spec.shards)) if spec.shards > 1 else None


def sharded_asset_keys(spec: DatasetSpec) -> list[dg.AssetKey]:
    return [dg.AssetKey([spec.name, a]) for a in SHARDED_ASSETS] if spec.shards > 1 else []


def current_shard(context: dg.AssetExecutionContext) -> str | None:
    return context.partition_key if context.has_partition_key else None


def rows_of_current_shard(context: dg.AssetExecutionContext, spec: DatasetSpec,
                          frame: pd.DataFrame) -> pd.DataFrame:
    """The rows this run works on: the current shard's, or every row when unsharded."""
    shard = current_shard(context)
    return frame if shard is None else rows_in_shard(frame, shard, spec.shards)


def shard_path(path: Path, shard: str | None) -> Path:
    """`report.json` -> `report.<shard>.json` for a shard; unchanged when unsharded."""
    return path if shard is None else path.with_name(f"{path.stem}.{shard}{path.suffix}")


def shard_folder(folder: Path, shard: str | None) -> Path:
    """A shard's own output folder (`resized/shard-03`), so shards never share a manifest."""
    return folder if shard is None else folder / f"shard-{shard}"
