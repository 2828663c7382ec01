"""The resize manifest: what an earlier stage_resize run did, one row per sample, in SQLite.

A row holds the sample id, its source's signature (path, HDF5 member, size, mtime_ns), the spec
fingerprint, the output (relative path, bytes) and the outcome (status, reason, detail), one
column each, so a run reads the whole manifest as columns in one query and plans against it
with vectorised comparisons (a re-run with nothing to do costs a few microseconds per sample).
A long run checkpoints every minute; a checkpoint writes only the rows that changed since the
last one, in one transaction, so its cost is the new work, not the whole manifest (the JSON
file this replaces was rewritten whole at every checkpoint: 220 MB and 25 s per save at 1M
samples, a total growing as N squared). A crash leaves the last committed checkpoint (SQLite's
journal). Manifests written before, a JSON file (`.resize_manifest.json`) or a table of JSON
entries, are read once and carried over; an unreadable one means redoing every image, never a
failure.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

MANIFEST_NAME = ".resize_manifest.sqlite"
LEGACY_MANIFEST_NAME = ".resize_manifest.json"
COLUMNS = ("id", "src_path", "member", "src_size", "src_mtime_ns", "spec", "output", "bytes",
           "status", "reason", "detail")
_INTEGERS = ("src_size", "src_mtime_ns", "bytes")
_TABLE = "outputs"
_SCHEMA = (f"CREATE TABLE IF NOT EXISTS {_TABLE} (id TEXT PRIMARY KEY, src_path TEXT, "
           "member TEXT, src_size INTEGER, src_mtime_ns INTEGER, spec TEXT, output TEXT, "
           "bytes INTEGER, status TEXT, reason TEXT, detail TEXT)")
Row = tuple  # one value per COLUMNS entry


class ResizeManifest:
    """The manifest as a DataFrame (`frame`, one column per COLUMNS entry, loaded whole: the run
    plans against all of it) plus the rows to write: `put` and `delete` mark what `save`
    writes."""

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / MANIFEST_NAME
        self._put: dict[str, Row] = {}
        self._gone: set[str] = set()
        self._migrated = False
        self.frame = self._load()

    # changing ------------------------------------------------------------------------------
    def put(self, rows: Iterable[Row]) -> None:
        """Rows to insert or replace at the next save (the frame is not updated: a run plans
        once, against what was there when it started)."""
        for row in rows:
            self._put[row[0]] = row
            self._gone.discard(row[0])

    def delete(self, ids: Iterable[str]) -> None:
        for sample_id in ids:
            self._put.pop(sample_id, None)
            self._gone.add(sample_id)

    def save(self) -> int:
        """Write what changed since the last save, in one transaction; returns how many rows
        were written or deleted."""
        changed = len(self._put) + len(self._gone)
        if not changed and self.path.exists() and not self._migrated:
            return 0
        db = sqlite3.connect(self.path)
        try:
            with db:
                db.execute(_SCHEMA)
                if self._migrated:
                    db.execute("DROP TABLE IF EXISTS entries")
                db.executemany(f"INSERT OR REPLACE INTO {_TABLE} VALUES "
                               f"({','.join('?' * len(COLUMNS))})", self._put.values())
                db.executemany(f"DELETE FROM {_TABLE} WHERE id = ?", ((k,) for k in self._gone))
        finally:
            db.close()
        self._put.clear()
        self._gone.clear()
        self._migrated = False
        legacy = self.path.with_name(LEGACY_MANIFEST_NAME)
        if legacy.exists():                   # carried over into the database: no longer read
            legacy.unlink()
        return changed

    # storage -------------------------------------------------------------------------------
    def _load(self) -> pd.DataFrame:
        if not self.path.exists():
            return self._carry_over(_load_legacy(self.path.with_name(LEGACY_MANIFEST_NAME)))
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                tables = {r[0] for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                if _TABLE in tables:
                    rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM {_TABLE}").fetchall()
                    return _frame(rows)
                entries = (db.execute("SELECT id, entry FROM entries").fetchall()
                           if "entries" in tables else [])
            finally:
                db.close()
            values = json.loads("[" + ",".join(v for _, v in entries) + "]")  # one parse, not N
            return self._carry_over(dict(zip((k for k, _ in entries), values)))
        except (sqlite3.DatabaseError, ValueError) as exc:
            log.warning("ignoring unreadable resize manifest %s (%s): every image is redone",
                        self.path, exc)
            self.path.unlink()                # ours (the output folder's), rebuilt on save
            return _frame([])

    def _carry_over(self, entries: dict[str, dict]) -> pd.DataFrame:
        """Rows of an older manifest's JSON entries, all to be written at the next save."""
        rows = [row for row in (_row_of_entry(k, v) for k, v in entries.items()) if row]
        self.put(rows)
        self._migrated = bool(rows) or self.path.exists()
        return _frame(rows)


def _frame(rows: list[Row]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for name in COLUMNS:
        if name in _INTEGERS:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").fillna(-1).astype("int64")
        else:
            frame[name] = frame[name].fillna("").astype(object)
    return frame


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
    """The entries of a JSON manifest from before the database ({} when none or unreadable)."""
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
