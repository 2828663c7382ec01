"""IO managers that hand downstream assets what they need, picked by the input's type annotation.

DataFrame outputs (the sample table at each stage, split manifests) are stored as Parquet under
`<storage_root>/<asset key path>.parquet`, written atomically, with the path, row count, size
and column schema (names and types, shown by the UI) recorded as metadata; downstream assets
get a pandas DataFrame back.
A partitioned (sharded, assets/shards.py) asset stores one file per shard under
`<asset key path>/<shard>.parquet`; a downstream input receives the shards it depends on
concatenated: its own shard for a sharded asset, every shard for an unpartitioned one (splits),
which is how the shards' outputs are combined. An input declared with
`AssetIn(metadata={"columns": [...]})` reads only those columns (a step that needs the sample
id and path of a million-row catalog does not hold its other twenty columns).
"""

from __future__ import annotations

from pathlib import Path
from typing import get_origin

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from ml.atomic import atomic_path, atomic_write_text, remove_stale_temps
from ml.formats.handles import Handle, MemfileHandle, TFRecordShardsHandle
from ml.publish import prune_for


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    """The frame's columns and their types, as the UI shows a table's schema."""
    return dg.TableSchema(columns=[dg.TableColumn(str(name), str(dtype))
                                   for name, dtype in frame.dtypes.items()])


class ParquetFrameIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames as Parquet files named after the asset key."""

    base_dir: str = Field(default="outputs",
                          description="Folder under which <asset key path>.parquet files live")

    def _path(self, key: dg.AssetKey, partition: str | None = None) -> Path:
        base = Path(self.base_dir).joinpath(*key.path)
        return base / f"{partition}.parquet" if partition is not None else \
            base.with_suffix(".parquet")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} returned "
                            f"{type(obj).__name__}; this IO manager stores pandas DataFrames")
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = self._path(context.asset_key, partition)
        remove_stale_temps(path)
        with atomic_path(path) as tmp:
            obj.to_parquet(tmp, index=False)
        context.add_output_metadata({
            "parquet": dg.MetadataValue.path(str(path)),
            "rows": len(obj),
            "parquet_bytes": path.stat().st_size,
            "dagster/row_count": len(obj),
            "dagster/column_schema": column_schema(obj),
        })

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        key = context.upstream_output.asset_key if context.upstream_output else context.asset_key
        columns = (context.definition_metadata or {}).get("columns")
        if context.has_asset_partitions:
            return self._load_shards(key, list(context.asset_partition_keys), columns)
        path = self._path(key)
        if not path.exists():
            raise dg.Failure(
                f"{key.to_user_string()} has not been materialized yet ({path} does not exist); "
                "materialize it first (e.g. run the prepare job)")
        return pd.read_parquet(path, columns=columns)

    def _load_shards(self, key: dg.AssetKey, shards: list[str],
                     columns: list[str] | None = None) -> pd.DataFrame:
        paths = [self._path(key, s) for s in sorted(shards)]
        missing = [s for s, p in zip(sorted(shards), paths) if not p.exists()]
        if missing:
            raise dg.Failure(
                f"{key.to_user_string()}: shard(s) {', '.join(missing)} of {len(shards)} have not "
                f"been materialized ({self._path(key, missing[0])} does not exist); materialize "
                "the missing shards first (backfill the dataset's shards in the UI, or run its "
                "<dataset>_shards job for each shard)")
        return pd.concat([pd.read_parquet(p, columns=columns) for p in paths], ignore_index=True)


class HandleIOManager(dg.ConfigurableIOManager):
    """Stores artifact handles (ml/formats/handles.py) as `<asset key>.handle.json`.

    Writing the handle is what commits a packed artifact: the handle names the published version
    folder (ml/publish.py), and only after it is written are the versions it no longer names
    removed, so a crash leaves the old handle with the old files or the new with the new.

    What a downstream asset receives depends on its input's type annotation: the handle itself
    (RecordIOHandle, TFRecordShardsHandle, H5StoreHandle, MemfileHandle), or for a memfile
    `np.ndarray`/`np.memmap` (the images, memory-mapped read-only), or for TFRecords
    `list` (every shard path). Large data never passes through the IO manager.
    """

    base_dir: str = Field(default="outputs",
                          description="Folder under which <asset key path>.handle.json files live")

    def _path(self, key: dg.AssetKey) -> Path:
        return Path(self.base_dir).joinpath(*key.path).with_suffix(".handle.json")

    def handle_output(self, context: dg.OutputContext, obj: Handle) -> None:
        if not isinstance(obj, Handle):
            raise TypeError(f"{context.asset_key.to_user_string()} returned "
                            f"{type(obj).__name__}; this IO manager stores artifact handles")
        path = self._path(context.asset_key)
        remove_stale_temps(path)
        atomic_write_text(path, obj.to_json())   # the commit point of a packed artifact
        prune_for(obj)                           # versions no handle names any more (ml/publish.py)
        context.add_output_metadata({"handle": dg.MetadataValue.path(str(self._path(context.asset_key))),
                                     "handle_type": type(obj).__name__})

    def load_input(self, context: dg.InputContext):
        key = context.upstream_output.asset_key if context.upstream_output else context.asset_key
        path = self._path(key)
        if not path.exists():
            raise dg.Failure(f"{key.to_user_string()} has not been materialized yet ({path} does "
                             "not exist); run the prepare job first")
        handle = Handle.from_json(path.read_text())
        wanted = context.dagster_type.typing_type if context.dagster_type else None
        if isinstance(handle, MemfileHandle) and wanted in (np.ndarray, np.memmap):
            return handle.open()
        if isinstance(handle, TFRecordShardsHandle) and (wanted is list or get_origin(wanted) is list):
            return [p for split in sorted(handle.shards) for p in handle.shard_paths(split)]
        if isinstance(wanted, type) and issubclass(wanted, Handle) and not isinstance(handle, wanted):
            raise dg.Failure(f"{key.to_user_string()} holds a {type(handle).__name__}, but the "
                             f"input is annotated {wanted.__name__}")
        return handle
