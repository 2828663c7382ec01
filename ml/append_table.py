"""A keyed table kept as append-only Parquet parts: writes cost what changed, reads are columns.

A table is a folder of Parquet files with one schema plus a boolean `_deleted` column:
`base-<seq>.parquet` holds every live row once (a compaction), `part-<seq>.parquet` holds the
rows written or deleted by one `append` after it. Reading takes the newest base and the parts
numbered after it, in order, and keeps each key's last row (dropping deleted ones), all in
Arrow: a million rows read in a fraction of a second with no Python object per row.

Every file is written through a temporary sibling and renamed into place (ml/atomic.py), so a
crash leaves the table as it was after the last whole append. `compact` writes a new base
numbered after every part it folded in and only then removes them; a crash between the two
leaves files that the new base's number already makes the reader ignore.

One writer at a time: the folder belongs to one asset's output (the resize manifest).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ml.atomic import atomic_path, fsync_dir, remove_stale_temps_under

DELETED = "_deleted"
_FILE = re.compile(r"^(base|part)-(\d{8})\.parquet$")
COMPACT_PARTS = 8           # fold the parts into a new base once there are this many, or
COMPACT_FRACTION = 0.25     # once they hold this fraction of the base's rows


class AppendOnlyTable:
    """Rows keyed by the string column `key`, with `schema`'s columns."""

    def __init__(self, folder: str | os.PathLike, schema: pa.Schema, key: str):
        self.folder = Path(folder)
        self.schema = schema
        self.key = key
        self._stored = schema.append(pa.field(DELETED, pa.bool_()))

    def exists(self) -> bool:
        return bool(self._files())

    # reading -------------------------------------------------------------------------------
    def read(self) -> pa.Table:
        """The live rows (each key's last write, deletions applied), in `schema`."""
        base, parts = self._current()
        tables = [pq.read_table(path, schema=self._stored) for path in [base, *parts] if path]
        if not tables:
            return self.schema.empty_table()
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        if len(tables) > 1:
            table = _last_per_key(table, self.key)
        deleted = table[DELETED].fill_null(False)
        if pc.any(deleted).as_py():              # a base alone holds no deletions: no copy
            table = table.filter(pc.invert(deleted))
        return table.drop_columns([DELETED])

    # writing -------------------------------------------------------------------------------
    def append(self, rows: pa.Table | None = None, deleted: Sequence[str] = ()) -> int:
        """Write `rows` (inserted or replacing their keys) and the deletion of `deleted` keys as
        one new part; returns how many rows it holds (0: nothing written)."""
        rows = self.schema.empty_table() if rows is None else rows.select(self.schema.names)
        gone = pa.array(list(deleted), pa.string())
        if not len(rows) and not len(gone):
            return 0
        tombstones = pa.table({name: (gone if name == self.key else
                                      pa.nulls(len(gone), field.type))
                               for name, field in zip(self.schema.names, self.schema)})
        part = pa.concat_tables([rows.cast(self.schema), tombstones.cast(self.schema)])
        flags = np.r_[np.zeros(len(rows), bool), np.ones(len(gone), bool)]
        self._write("part", part.append_column(DELETED, pa.array(flags)))
        return len(part)

    def replace(self, rows: pa.Table) -> None:
        """Make `rows` the whole table (one new base; older files removed)."""
        rows = rows.select(self.schema.names).cast(self.schema)
        self._write("base", rows.append_column(DELETED, pa.array(np.zeros(len(rows), bool))))
        self._remove_superseded()

    def compact(self, force: bool = False) -> bool:
        """Fold the parts into a new base when they are many or large (always with `force`);
        returns whether it did."""
        base, parts = self._current()
        if not parts:
            return False
        base_rows = pq.ParquetFile(base).metadata.num_rows if base else 0
        part_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        if force or len(parts) >= COMPACT_PARTS or part_rows >= COMPACT_FRACTION * base_rows:
            self.replace(self.read())
            return True
        return False

    # files ---------------------------------------------------------------------------------
    def _files(self) -> list[tuple[int, str, Path]]:
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        found = [(int(m[2]), m[1], self.folder / name)
                 for name in names if (m := _FILE.match(name))]
        return sorted(found)

    def _current(self) -> tuple[Path | None, list[Path]]:
        files = self._files()
        bases = [seq for seq, kind, _ in files if kind == "base"]
        since = max(bases) if bases else -1
        base = next((p for seq, kind, p in files if kind == "base" and seq == since), None)
        return base, [p for seq, kind, p in files if kind == "part" and seq > since]

    def _write(self, kind: str, table: pa.Table) -> None:
        files = self._files()
        seq = files[-1][0] + 1 if files else 0
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps_under(self.folder)
        with atomic_path(self.folder / f"{kind}-{seq:08d}.parquet") as tmp:
            pq.write_table(table, tmp)
        fsync_dir(self.folder)

    def _remove_superseded(self) -> None:
        files = self._files()
        newest_base = max(seq for seq, kind, _ in files if kind == "base")
        for seq, _, path in files:
            if seq < newest_base:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _last_per_key(table: pa.Table, key: str) -> pa.Table:
    """Each key's last row, in the order of those rows (the table itself, not a copy, when
    every key is there once: the parts of a first run)."""
    if pc.count_distinct(table[key]).as_py() == len(table):
        return table
    order = pa.array(np.arange(len(table), dtype=np.int64))
    last = (pa.table({key: table[key], "_row": order})
            .group_by(key, use_threads=False).aggregate([("_row", "max")]))
    rows = np.sort(last["_row_max"].to_numpy())
    return table.take(pa.array(rows))
