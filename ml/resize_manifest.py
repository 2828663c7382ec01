"""The resize manifest: what an earlier stage_resize run did, one row per sample.

A row holds the sample id, its source's signature (path, HDF5 member, size, mtime_ns), the spec
fingerprint, the output (relative path, bytes) and the outcome (status, reason, detail). It is
an append-only table of Parquet parts (ml/append_table.py) in `out_dir/.resize_manifest/`: a run
reads it whole as Arrow columns (a million rows in a fraction of a second, no Python object per
row) and plans against it with vectorised comparisons; a long run checkpoints every minute by
writing one part with only the rows that changed since the last checkpoint, so a checkpoint
costs the new work, not the whole manifest (the JSON file of the first version was rewritten
whole at every checkpoint: 220 MB and 25 s per save at 1M samples, a total growing as N
squared); the end of a run folds the parts into one file when they have grown. A crash leaves
the last whole checkpoint.

Manifests written by earlier versions (a SQLite file `.resize_manifest.sqlite` with a table of
columns or of JSON entries, or a JSON file `.resize_manifest.json`) are read once, carried
over, and removed once the carried rows are saved; an unreadable manifest means redoing every
image, never a failure.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ml.append_table import AppendOnlyTable

log = logging.getLogger(__name__)

MANIFEST_NAME = ".resize_manifest"
SQLITE_MANIFEST_NAME = ".resize_manifest.sqlite"     # the second version's file
LEGACY_MANIFEST_NAME = ".resize_manifest.json"       # the first version's file
SCHEMA = pa.schema([("id", pa.string()), ("src_path", pa.string()), ("member", pa.string()),
                    ("src_size", pa.int64()), ("src_mtime_ns", pa.int64()),
                    ("spec", pa.string()), ("output", pa.string()), ("bytes", pa.int64()),
                    ("status", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
COLUMNS = tuple(SCHEMA.names)
Row = tuple  # one value per COLUMNS entry


class ResizeManifest:
    """The manifest as Arrow columns (`table`, loaded whole: the run plans against all of it)
    plus the rows to write: `put` and `delete` mark what `save` writes."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self.store = AppendOnlyTable(self.out_dir / MANIFEST_NAME, SCHEMA, key="id")
        self._put: dict[str, Row] = {}
        self._gone: set[str] = set()
        self.table = self._load()

    @property
    def frame(self) -> pd.DataFrame:
        """The manifest as a DataFrame (for inspection and tests; a run uses `table`)."""
        return self.table.to_pandas()

    # changing ------------------------------------------------------------------------------
    def put(self, rows: Iterable[Row]) -> None:
        """Rows to insert or replace at the next save (the table is not updated: a run plans
        once, against what was there when it started)."""
        for row in rows:
            self._put[row[0]] = row
            self._gone.discard(row[0])

    def delete(self, ids: Iterable[str]) -> None:
        for sample_id in ids:
            self._put.pop(sample_id, None)
            self._gone.add(sample_id)

    @property
    def unsaved(self) -> int:
        """Rows put or deleted since the last save (held as Python tuples until then)."""
        return len(self._put) + len(self._gone)

    def save(self) -> int:
        """Write what changed since the last save as one part; returns how many rows were
        written or deleted."""
        changed = len(self._put) + len(self._gone)
        if changed:
            self.store.append(_table(list(self._put.values())), deleted=sorted(self._gone))
            self._put.clear()
            self._gone.clear()
        if self.store.exists():
            _remove_older_manifests(self.out_dir)       # carried over: no longer read
        return changed

    def finish(self) -> None:
        """The end of a run: save, and fold the parts into one file when they have grown."""
        self.save()
        self.store.compact()

    # storage -------------------------------------------------------------------------------
    def _load(self) -> pa.Table:
        if self.store.exists():
            try:
                return self.store.read()
            except (pa.ArrowException, OSError) as exc:
                log.warning("ignoring unreadable resize manifest %s (%s): every image is redone",
                            self.store.folder, exc)
                shutil.rmtree(self.store.folder)        # ours (the output folder's), rebuilt on save
                return SCHEMA.empty_table()
        rows = _older_rows(self.out_dir)
        self.put(rows)                                  # written at the first save
        return _table(rows)


def _table(rows: list[Row]) -> pa.Table:
    columns = list(zip(*rows)) or [[] for _ in COLUMNS]
    return pa.table([pa.array(values, field.type) for values, field in zip(columns, SCHEMA)],
                    schema=SCHEMA)


def _remove_older_manifests(out_dir: Path) -> None:
    for name in (SQLITE_MANIFEST_NAME, LEGACY_MANIFEST_NAME):
        path = out_dir / name
        if path.exists():
            path.unlink()


def _older_rows(out_dir: Path) -> list[Row]:
    """The rows of a manifest an earlier version wrote ([] when none or unreadable)."""
    sqlite_path = out_dir / SQLITE_MANIFEST_NAME
    if sqlite_path.exists():
        try:
            db = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
            try:
                tables = {r[0] for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "outputs" in tables:
                    rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM outputs").fetchall()
                    return [_clean(row) for row in rows]
                entries = (db.execute("SELECT id, entry FROM entries").fetchall()
                           if "entries" in tables else [])
            finally:
                db.close()
            values = json.loads("[" + ",".join(v for _, v in entries) + "]")  # one parse, not N
            return _rows_of_entries(dict(zip((k for k, _ in entries), values)))
        except (sqlite3.DatabaseError, ValueError) as exc:
            log.warning("ignoring unreadable resize manifest %s (%s): every image is redone",
                        sqlite_path, exc)
            return []
    return _rows_of_entries(_load_legacy(out_dir / LEGACY_MANIFEST_NAME))


def _clean(row: Row) -> Row:
    """A row with SQLite's NULLs as the manifest's blanks."""
    return tuple((-1 if v is None else int(v)) if name in ("src_size", "src_mtime_ns", "bytes")
                 else ("" if v is None else str(v)) for name, v in zip(COLUMNS, row))


def _rows_of_entries(entries: dict[str, dict]) -> list[Row]:
    return [row for row in (_row_of_entry(k, v) for k, v in entries.items()) if row]


def _row_of_entry(sample_id: str, entry: dict) -> Row | None:
    """An older manifest's entry {"source": [path, member, size, mtime_ns], "spec", "output",
    "bytes", "status", "reason", "detail"} as a row; None when it is not one."""
    try:
        path, member, size, mtime_ns = entry["source"]
        return (str(sample_id), str(path), str(member), int(size), int(mtime_ns),
                str(entry["spec"]), str(entry.get("output", "")), int(entry.get("bytes", 0)),
                str(entry.get("status", "")), str(entry.get("reason", "")),
                str(entry.get("detail", "")))
    except (KeyError, TypeError, ValueError):
        return None


def _load_legacy(path: Path) -> dict[str, dict]:
    """The entries of the first version's JSON manifest ({} when none or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["entries"]
        if data.get("version") != 1 or not isinstance(entries, dict):
            raise ValueError("unknown layout")
        return {k: v for k, v in entries.items() if isinstance(v, dict)}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable resize manifest %s (%s): every image is redone", path, exc)
        return {}
