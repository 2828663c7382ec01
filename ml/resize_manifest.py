"""The resize manifest: what an earlier stage_resize run did, one row per sample, in SQLite.

Each row is a sample id and its entry (source signature, spec fingerprint, output, bytes,
status, reason, detail) as JSON. A long run checkpoints every minute; a checkpoint writes only
the entries that changed since the last one, in one transaction, so its cost is the new work,
not the whole manifest (the JSON file this replaces was rewritten whole at every checkpoint:
220 MB and 25 s per save at 1M samples, a total growing as N squared). A crash leaves the last
committed checkpoint (SQLite's journal). A manifest written before (`.resize_manifest.json`) is
read once and carried over; an unreadable one means redoing every image, never a failure.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST_NAME = ".resize_manifest.sqlite"
LEGACY_MANIFEST_NAME = ".resize_manifest.json"


class ResizeManifest:
    """Entries by sample id, loaded whole (the run plans against all of them) and saved by
    difference: `set` and `delete` mark what `save` writes."""

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / MANIFEST_NAME
        self._dirty: set[str] = set()
        self._gone: set[str] = set()
        self.entries = self._load()

    # reading -------------------------------------------------------------------------------
    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.entries

    def get(self, sample_id: str) -> dict | None:
        return self.entries.get(sample_id)

    def ids(self) -> list[str]:
        return list(self.entries)

    def values(self) -> Iterator[dict]:
        return iter(self.entries.values())

    # changing ------------------------------------------------------------------------------
    def set(self, sample_id: str, entry: dict) -> None:
        self.entries[sample_id] = entry
        self._dirty.add(sample_id)
        self._gone.discard(sample_id)

    def delete(self, sample_id: str) -> None:
        del self.entries[sample_id]
        self._dirty.discard(sample_id)
        self._gone.add(sample_id)

    def save(self) -> int:
        """Write what changed since the last save, in one transaction; returns how many rows
        were written or deleted."""
        changed = len(self._dirty) + len(self._gone)
        if not changed and self.path.exists():
            return 0
        db = self._connect()
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?)",
                               ((k, json.dumps(self.entries[k], separators=(",", ":")))
                                for k in self._dirty))
                db.executemany("DELETE FROM entries WHERE id = ?", ((k,) for k in self._gone))
        finally:
            db.close()
        self._dirty.clear()
        self._gone.clear()
        legacy = self.path.with_name(LEGACY_MANIFEST_NAME)
        if legacy.exists():                   # carried over into the database: no longer read
            legacy.unlink()
        return changed

    # storage -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        db.execute("CREATE TABLE IF NOT EXISTS entries (id TEXT PRIMARY KEY, entry TEXT NOT NULL)")
        return db

    def _load(self) -> dict[str, dict]:
        if not self.path.exists():
            entries = _load_legacy(self.path.with_name(LEGACY_MANIFEST_NAME))
            self._dirty.update(entries)
            return entries
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                rows = db.execute("SELECT id, entry FROM entries").fetchall()
            finally:
                db.close()
            values = json.loads("[" + ",".join(v for _, v in rows) + "]")   # one parse, not N
            entries = dict(zip((k for k, _ in rows), values))
            return {k: v for k, v in entries.items()
                    if isinstance(v, dict) and isinstance(v.get("output", ""), str)}
        except (sqlite3.DatabaseError, ValueError) as exc:
            log.warning("ignoring unreadable resize manifest %s (%s): every image is redone",
                        self.path, exc)
            self.path.unlink()                # ours (the output folder's), rebuilt on save
            return {}


def _load_legacy(path: Path) -> dict[str, dict]:
    """The entries of a JSON manifest from before the database ({} when none or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["entries"]
        if data.get("version") != 1 or not isinstance(entries, dict):
            raise ValueError("unknown layout")
        return {k: v for k, v in entries.items()
                if isinstance(v, dict) and isinstance(v.get("output", ""), str)}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable resize manifest %s (%s): every image is redone", path, exc)
        return {}
