"""The sample table as a stage finds it on disk and as it leaves it: read a few columns, write
an edit, never hold all of a million-row table.

A stage that adds five columns to a 25-column table needs none of the other twenty in memory:
it reads the columns it computes on (`StoredTable.read`) and returns a `TableEdit` (which of
its parent's rows it keeps, and the columns it sets on them). Writing the edit streams the
parent's Parquet files in batches of BATCH_ROWS rows, puts the edit's columns in (a column of
the parent with the same name is replaced in place, a new one goes last, as
`DataFrame.assign` does) and writes each batch out, so the step holds the columns it computed
plus one batch. What lands on disk is what writing `parent.assign(**columns)[keep]` whole
would have written: the same columns, values and pandas types (Int64 stays Int64).

At 1M samples (23 columns, 250 MB of Arrow buffers, and as much again while Parquet decodes
them) this is the difference between a step of 1.4 GB and one of well under 1 GB
(docs/benchmarks.md). An edit that keeps every row of a one-file parent is not streamed but
spliced (ml/parquet_splice.py: the parent's column chunks copied as bytes, only the edit's
columns encoded; 0.05 s instead of 0.4 s at 366,858 rows), and a step may begin its `also`
files early (`start_also`) so that they are encoded while it finishes its own work.

ml/ knows nothing of Dagster: resources/io_managers.py hands a stage its input as a StoredTable
when the input is annotated so, and writes a TableEdit it returns.
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ml.atomic import atomic_path, temp_sibling
from ml.columns import one_array
from ml.parquet_splice import NotSpliceable, splice

BATCH_ROWS = 65_536          # rows decoded, edited and encoded at a time
SAMPLE_ROWS = 8_192          # rows that show whether a text column repeats (writer_options)
ROW_GROUP_ROWS = 131_072     # rows per Parquet row group written (pyarrow's own default is 1Mi)


@dataclass(frozen=True)
class StoredTable:
    """A table stored as Parquet: one file, or one per partition read in order as one table."""

    paths: tuple[Path, ...]

    @classmethod
    def at(cls, *paths: str | Path) -> "StoredTable":
        return cls(tuple(Path(p) for p in paths))

    def __len__(self) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.paths)

    @property
    def schema(self) -> pa.Schema:
        """The first file's Arrow schema (with the pandas metadata that restores dtypes)."""
        return pq.read_schema(self.paths[0])

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The table, or only `columns` of it, as one DataFrame (pandas dtypes restored)."""
        wanted = None
        if columns is not None:
            present = set(self.columns)          # the schema read once
            wanted = [c for c in columns if c in present]
        parts = [pd.read_parquet(p, columns=wanted) for p in self.paths]
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class TableEdit:
    """`base` with `columns` set on the rows at `keep` (a bool mask over base's rows; None keeps
    every row). `columns` has one row per kept row, in base's order; its index is ignored.
    `also` names more files written in the same pass by `save`, each through its own mask over
    the kept rows (the split manifests beside the splits table)."""

    base: StoredTable
    columns: pd.DataFrame
    keep: np.ndarray | None = None
    also: Mapping[Path, np.ndarray | None] = field(default_factory=dict)
    _kept: int = field(init=False, repr=False, compare=False, default=0)
    _early: Future | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        kept = len(self.base) if self.keep is None else int(np.count_nonzero(self.keep))
        if self.keep is not None and len(self.keep) != len(self.base):
            raise ValueError(f"keep mask of {len(self.keep)} rows for a table of {len(self.base)}")
        if len(self.columns) != kept:
            raise ValueError(f"edit columns of {len(self.columns)} rows for {kept} kept rows")
        object.__setattr__(self, "_kept", kept)

    def __len__(self) -> int:
        return self._kept

    def dtypes(self) -> pd.Series:
        """The edited table's column types (as the UI's schema shows them)."""
        dtypes = self.base.schema.empty_table().to_pandas().dtypes.to_dict()
        dtypes.update(self.columns.dtypes.to_dict())      # set in place, or added last
        return pd.Series(dtypes)

    def save(self, path: Path) -> dict[Path, int]:
        """The edited table to `path` and the `also` files, in one pass (`write`)."""
        return self.write({Path(path): None, **self.also})

    def start_also(self) -> None:
        """Begin writing the `also` files now, on a thread, into temporary siblings that only
        `write` publishes (with the table: all of them or none). A step that still has work to
        do before it returns the edit (the splits step draws its charts) overlaps it with the
        slowest part of its write: the split manifests are the parent decoded and re-encoded,
        the table itself is spliced."""
        if self.also and self._early is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="table-edit")
            object.__setattr__(self, "_early", pool.submit(self._write_temporaries,
                                                           self._masks(self.also)))
            pool.shutdown(wait=False)

    def _masks(self, targets: Mapping[Path, np.ndarray | None]) -> dict[Path, np.ndarray | None]:
        masks = {Path(p): m for p, m in targets.items()}
        for path, mask in masks.items():
            if mask is not None and len(mask) != len(self):
                raise ValueError(f"{path}: mask of {len(mask)} rows for {len(self)} kept rows")
        return masks

    def _write_temporaries(self, targets: dict[Path, np.ndarray | None]
                           ) -> dict[Path, tuple[Path, int]]:
        """Each target written (and synced) to a temporary sibling: {target: (temporary, rows)}.
        On an error none is left."""
        temps = {p: temp_sibling(p) for p in targets}
        try:
            for path in targets:
                path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.ExitStack() as stack:
                written = _Edited(self).stream({temps[p]: m for p, m in targets.items()}, stack)
            for temp in temps.values():
                with open(temp, "rb+") as fh:
                    os.fsync(fh.fileno())
        except BaseException:
            for temp in temps.values():
                temp.unlink(missing_ok=True)
            raise
        return {p: (temps[p], written[temps[p]]) for p in targets}

    def write(self, targets: Mapping[Path, np.ndarray | None]) -> dict[Path, int]:
        """Write the edited table to each target path (atomically, published whole: all of
        them or, on an error, none), each through its own mask over the kept rows (None: all of
        them). A whole target of an edit that keeps every row of a one-file base is spliced
        (ml/parquet_splice.py: the base's column chunks copied, only the edit's columns
        encoded); the others are written in one pass over the base, each batch encoded into
        them by a thread per target (Parquet encoding releases the GIL) while the next batch
        decodes. Files begun early (`start_also`) are waited for after these, so that the
        splice overlaps them. Returns the rows written per path."""
        masks = self._masks(targets)
        begun = {Path(p) for p in self.also} if self._early is not None else set()
        edited = _Edited(self)
        with contextlib.ExitStack() as stack:
            stack.callback(self._discard_early)        # on an error, once the files begun
            tmps = {p: stack.enter_context(atomic_path(p))        # early are done
                    for p in masks if p not in begun}
            written = {p: len(self) for p, m in masks.items()
                       if p in tmps and m is None and edited.splice(tmps[p])}
            rest = {p: m for p, m in masks.items() if p in tmps and p not in written}
            if rest:
                streamed = edited.stream({tmps[p]: m for p, m in rest.items()}, stack)
                written.update({p: streamed[tmps[p]] for p in rest})
            early = self._early_files(masks)    # waited for after this thread's own files
            for path, (temp, rows) in early.items():
                stack.enter_context(atomic_path(path, temp))
                written[path] = rows
        return written

    def _early_files(self, masks: Mapping[Path, np.ndarray | None]
                     ) -> dict[Path, tuple[Path, int]]:
        """The files `start_also` wrote, when these targets include them ({} when it was not
        called). Waits for them; their error, if any, is this write's."""
        if self._early is None:
            return {}
        job = self._early
        object.__setattr__(self, "_early", None)       # its files are published once
        early = job.result()
        if any(p not in masks for p in early):
            for temp, _ in early.values():
                temp.unlink(missing_ok=True)
            raise ValueError("the files begun early are not among this write's targets")
        return early

    def _discard_early(self) -> None:
        """After a failed write: wait for the files begun early (if not yet taken) and remove
        them, so that nothing of this edit is published and no temporary is left."""
        job = self._early
        if job is None:
            return
        object.__setattr__(self, "_early", None)
        with contextlib.suppress(Exception):     # its own error: it removed its files
            for temp, _ in job.result().values():
                temp.unlink(missing_ok=True)


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """A whole table (a stage that makes its table, as the catalog does) written atomically the
    way an edit is: the same row groups and writer options."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS,
                       **writer_options(table.slice(0, SAMPLE_ROWS)))


def writer_options(sample: pa.RecordBatch | pa.Table) -> dict:
    """How our tables are written, from a sample of their rows: dictionary encoding only for
    text columns that repeat (a million distinct paths or hashes would fill a dictionary page
    and fall back anyway, after the work), no min/max statistics (nothing here filters on
    them; for long text they cost a third of the write)."""
    repeating = [f.name for f, column in zip(sample.schema, sample.columns)
                 if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
                 and pc.count_distinct(column).as_py() * 2 <= max(1, len(column))]
    return {"use_dictionary": repeating, "write_statistics": False}


class _Edited:
    """An edit in Arrow: the output schema (the base's columns with the edit's set in place or
    added last, and pandas metadata for every column, so pandas types come back as they were)
    and the edited record batches. No pandas per batch: base batches are decoded, filtered,
    given the edit's columns (zero-copy slices of one Arrow conversion) and handed on."""

    def __init__(self, edit: TableEdit):
        self.edit = edit
        self.table = added = pa.Table.from_pandas(edit.columns, preserve_index=False)
        self.added = {name: one_array(added.column(name)) for name in added.column_names}
        base = edit.base.schema
        names = list(base.names) + [n for n in added.column_names if n not in base.names]
        fields = [added.schema.field(n) if n in self.added else base.field(n) for n in names]
        self.schema = pa.schema(fields, metadata=_pandas_metadata(base, added.schema, names))

    def splice(self, target: Path) -> bool:
        """The whole edited table spliced into `target` (ml/parquet_splice.py) when the edit
        keeps every row of a one-file base; False when it cannot be (then stream it)."""
        if self.edit.keep is not None or len(self.edit.base.paths) != 1:
            return False
        try:
            splice(self.edit.base.paths[0], self.table, self.schema, target,
                   writer_options(self.table.slice(0, SAMPLE_ROWS)))
        except NotSpliceable:
            return False
        return True

    def stream(self, targets: Mapping[Path, np.ndarray | None],
               stack: contextlib.ExitStack) -> dict[Path, int]:
        """The edited table written to each (temporary) target through its mask, in one pass
        over the base. Returns the rows written per target."""
        written = dict.fromkeys(targets, 0)
        writers: dict[Path, pq.ParquetWriter] = {}

        def encode(path: Path, batch: pa.RecordBatch, start: int) -> None:
            mask = targets[path]
            part = batch if mask is None else \
                batch.filter(pa.array(mask[start:start + batch.num_rows]))
            if part.num_rows:
                writers[path].write_batch(part, row_group_size=ROW_GROUP_ROWS)
            written[path] += part.num_rows

        pool = stack.enter_context(ThreadPoolExecutor(min(len(targets), os.cpu_count() or 1)))
        encoding: list = []
        start = 0
        try:
            for batch in self.batches():
                if not writers:
                    options = writer_options(batch.slice(0, SAMPLE_ROWS))
                    writers = {p: stack.enter_context(pq.ParquetWriter(p, self.schema, **options))
                               for p in targets}
                for job in encoding:          # the previous batch done before this one goes in
                    job.result()
                encoding = [pool.submit(encode, p, batch, start) for p in targets]
                start += batch.num_rows
        finally:
            wait(encoding)                    # no writer is closed under a running encode
        for job in encoding:
            job.result()
        for writer in writers.values():
            writer.close()                    # before atomic_path publishes the file
        return written

    def batches(self) -> Iterator[pa.RecordBatch]:
        keep, start, kept_start, any_batch = self.edit.keep, 0, 0, False
        for batch in self._base_batches():
            rows = batch.num_rows
            if keep is not None:
                mask = keep[start:start + rows]
                if not mask.all():
                    batch = batch.filter(pa.array(mask))
            n = batch.num_rows
            arrays = [self.added[f.name].slice(kept_start, n) if f.name in self.added
                      else _as(batch.column(f.name), f.type) for f in self.schema]
            start, kept_start, any_batch = start + rows, kept_start + n, True
            yield pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        if not any_batch:
            yield pa.RecordBatch.from_pylist([], schema=self.schema)

    def _base_batches(self) -> Iterator[pa.RecordBatch]:
        names = [f.name for f in self.schema if f.name not in self.added]
        for path in self.edit.base.paths:
            yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=names)


def _as(column: pa.Array, kind: pa.DataType) -> pa.Array:
    """A base column in the output's type (a partition written with another type is cast)."""
    return column if column.type == kind else column.cast(kind)


def _pandas_metadata(base: pa.Schema, added: pa.Schema, names: list[str]) -> dict | None:
    """pandas' schema metadata for the edited table: each column's entry from where the column
    comes from (the edit's conversion, or the base file), in the output's order."""
    ours, theirs = added.pandas_metadata, base.pandas_metadata
    if not ours:
        return None
    entries = {c["name"]: c for c in (theirs or {}).get("columns", [])}
    entries.update({c["name"]: c for c in ours["columns"]})
    merged = dict(ours, columns=[entries[n] for n in names if n in entries])
    return {b"pandas": json.dumps(merged).encode("utf-8")}
