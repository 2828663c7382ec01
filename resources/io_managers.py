"""IO managers that hand downstream assets what they need, picked by the input's type annotation.

DataFrame outputs (the sample table at each stage, split manifests) are stored as Parquet under
`<storage_root>/<asset key path>.parquet`, written atomically, with the path, row count, size
and column schema (names and types, shown by the UI) recorded as metadata; downstream assets
get a pandas DataFrame back.
A partitioned asset (a dataset with `partitions: N`, assets/partitions.py) stores one file per
partition under `<asset key path>/<partition>.parquet`; a downstream input receives the
partitions it depends on concatenated: its own partition for a partitioned asset, every
partition for an unpartitioned one (splits), which is how the partitions' outputs are combined. An input declared with
`AssetIn(metadata={"columns": [...]})` reads only those columns (a step that needs the sample
id and path of a million-row catalog does not hold its other twenty columns). An input annotated
`StoredTable` is handed over unread (the step reads the columns it computes on), and a step may
return a `TableEdit` of it, written by streaming the parent (ml/stored_table.py). An input
declared with `AssetIn(metadata=AS_STORED)` is handed over as what is stored, unread: a
StoredTable, or a StoredHandle (the handle and its file), so that a trainer is given the IO
manager's own files rather than copies.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_origin

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from ml.atomic import atomic_write_text, remove_stale_temps
from ml.formats.handles import Handle, MemfileHandle, StoredHandle, TFRecordShardsHandle
from ml.publish import prune_for
from ml.stored_table import StoredTable, TableEdit, write_frame


def column_schema(dtypes: pd.Series) -> dg.TableSchema:
    """A table's columns and their types (`DataFrame.dtypes`), as the UI shows its schema."""
    return dg.TableSchema(columns=[dg.TableColumn(str(name), str(dtype))
                                   for name, dtype in dtypes.items()])


AS_STORED = {"as_stored": True}     # AssetIn metadata: the input as stored (file and all), unread


def _as_stored(context: dg.InputContext) -> bool:
    return bool((context.definition_metadata or {}).get("as_stored"))


def _annotation(context: dg.InputContext):
    """The input's type annotation (None for a context built without one, as in tests)."""
    try:
        return context.dagster_type.typing_type
    except dg.DagsterInvariantViolationError:
        return None


class ParquetFrameIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames as Parquet files named after the asset key."""

    base_dir: str = Field(default="outputs",
                          description="Folder under which <asset key path>.parquet files live")

    def _path(self, key: dg.AssetKey, partition: str | None = None) -> Path:
        base = Path(self.base_dir).joinpath(*key.path)
        return base / f"{partition}.parquet" if partition is not None else \
            base.with_suffix(".parquet")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | TableEdit) -> None:
        if not isinstance(obj, (pd.DataFrame, TableEdit)):
            raise TypeError(f"{context.asset_key.to_user_string()} returned "
                            f"{type(obj).__name__}; this IO manager stores pandas DataFrames "
                            "and edits of a stored table")
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = self._path(context.asset_key, partition)
        remove_stale_temps(path)
        if isinstance(obj, TableEdit):
            obj.save(path)
        else:
            write_frame(obj, path)
        context.add_output_metadata({
            "parquet": dg.MetadataValue.path(str(path)),
            "rows": len(obj),
            "parquet_bytes": path.stat().st_size,
            "dagster/row_count": len(obj),
            "dagster/column_schema": column_schema(obj.dtypes() if isinstance(obj, TableEdit)
                                                   else obj.dtypes),
        })

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | StoredTable:
        key = context.upstream_output.asset_key if context.upstream_output else context.asset_key
        columns = (context.definition_metadata or {}).get("columns")
        stored = StoredTable.at(*self._stored_paths(context, key))
        if _annotation(context) is StoredTable or _as_stored(context):
            return stored
        return stored.read(columns)

    def _stored_paths(self, context: dg.InputContext, key: dg.AssetKey) -> list[Path]:
        if not context.has_asset_partitions:
            path = self._path(key)
            if not path.exists():
                raise dg.Failure(
                    f"{key.to_user_string()} has not been materialized yet ({path} does not "
                    "exist); materialize it first (e.g. run the prepare job)")
            return [path]
        partitions = sorted(context.asset_partition_keys)
        paths = [self._path(key, s) for s in partitions]
        missing = [s for s, p in zip(partitions, paths) if not p.exists()]
        if missing:
            raise dg.Failure(
                f"{key.to_user_string()}: partition(s) {', '.join(missing)} of {len(partitions)} "
                f"have not been materialized ({self._path(key, missing[0])} does not exist); "
                "materialize the missing partitions first (backfill the dataset's partitions in "
                "the UI, or run its <dataset>_partitions job for each partition)")
        return paths


class HandleIOManager(dg.ConfigurableIOManager):
    """Stores artifact handles (ml/formats/handles.py) as `<asset key>.handle.json`.

    Writing the handle is what commits a packed artifact: the handle names the published version
    folder (ml/publish.py), and only after it is written are the versions it no longer names
    removed, so a crash leaves the old handle with the old files or the new with the new.

    What a downstream asset receives depends on its input's type annotation: the handle itself
    (RecordIOHandle, TFRecordShardsHandle, H5StoreHandle, MemfileHandle), or for a memfile
    `np.ndarray`/`np.memmap` (the images, memory-mapped read-only), or for TFRecords
    `list` (every TFRecord shard's path). Large data never passes through the IO manager.
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
        if _as_stored(context):
            return StoredHandle(path, handle)
        wanted = _annotation(context)
        if isinstance(handle, MemfileHandle) and wanted in (np.ndarray, np.memmap):
            return handle.open()
        if isinstance(handle, TFRecordShardsHandle) and (wanted is list or get_origin(wanted) is list):
            return [p for split in sorted(handle.shards) for p in handle.shard_paths(split)]
        if isinstance(wanted, type) and issubclass(wanted, Handle) and not isinstance(handle, wanted):
            raise dg.Failure(f"{key.to_user_string()} holds a {type(handle).__name__}, but the "
                             f"input is annotated {wanted.__name__}")
        return handle
