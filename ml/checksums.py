"""The checksum registry: what each image looked like the first time verification saw it.

A garbled JPEG often still decodes, so decoding alone cannot tell that a file changed under the
dataset. The registry remembers, per identifier, the file's size, mtime (ns), sha256 and when it
was first seen; a later verification compares against it. It is a small SQLite file (one table,
every write in one transaction) kept beside the pipeline's other artifacts, never in the images
folder. One process writes it at a time; a concurrent writer waits on SQLite's lock.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import adbc_driver_sqlite.dbapi as adbc_sqlite
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml.columns import one_array
from ml.errors import ConfigError
from ml.file_stats import NO_MTIME

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checksums (
    identifier TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER,              -- NULL for members of a container (HDF5 keys have no mtime)
    sha256     TEXT NOT NULL,
    first_seen TEXT NOT NULL
)
"""
_BATCH = 900  # stay under SQLite's limit on host parameters per statement
_LOOKUP_COLUMNS = "identifier, size, mtime_ns, sha256"
_LOOKUP_SCHEMA = pa.schema([("identifier", pa.string()), ("size", pa.int64()),
                            ("mtime_ns", pa.int64()), ("sha256", pa.string())])
SCAN_FROM = 0.5  # look up by scanning the table when the keys are at least half its rows


@dataclass(frozen=True)
class ChecksumEntry:
    """One identifier's recorded state: its bytes' size, mtime (ns), sha256, and first sighting."""

    identifier: str
    size: int
    mtime_ns: int | None
    sha256: str
    first_seen: str


def files_sha256(paths) -> str:
    """One sha256 over the files' bytes in order (the checksum of a whole artifact)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def now_text() -> str:
    """Local time as 'YYYY-MM-DD HH:MM:SS' (the verification report's timestamp format)."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class Recorded:
    """The registry's entries for a column of keys, aligned with it: `known` says which keys
    have one; size, mtime_ns (NO_MTIME where the record has none) and sha256 are theirs."""

    known: np.ndarray      # bool
    size: np.ndarray       # int64
    mtime_ns: np.ndarray   # int64
    sha256: pa.StringArray  # '' where unknown (Arrow: a million hashes are 64 MB, not 113)

    @classmethod
    def none(cls, n: int) -> "Recorded":
        return cls(np.zeros(n, bool), np.full(n, -1, np.int64), np.full(n, NO_MTIME, np.int64),
                   pa.repeat(pa.scalar("", pa.string()), n))


def stat_changed(recorded_size: np.ndarray, recorded_mtime: np.ndarray, size: np.ndarray,
                 mtime_ns: np.ndarray) -> np.ndarray:
    """Elementwise: size differs, or both mtimes are known and differ (members have none)."""
    mtime_differs = ((recorded_mtime != NO_MTIME) & (mtime_ns != NO_MTIME)
                     & (recorded_mtime != mtime_ns))
    return (recorded_size != size) | mtime_differs


def stat_difference(recorded: ChecksumEntry, size: int, mtime_ns: int | None) -> str:
    """'' when size and mtime match the record, else a sentence saying what differs."""
    parts = []
    if size != recorded.size:
        parts.append(f"size {recorded.size} -> {size} bytes")
    if recorded.mtime_ns is not None and mtime_ns is not None and mtime_ns != recorded.mtime_ns:
        parts.append("modification time differs")
    return ", ".join(parts)


def content_difference(recorded: ChecksumEntry, sha256: str) -> str:
    """'' when the bytes hash as recorded, else a sentence naming both hashes."""
    if sha256 == recorded.sha256:
        return ""
    return (f"sha256 {sha256[:16]}... differs from {recorded.sha256[:16]}... recorded "
            f"{recorded.first_seen}")


class ChecksumRegistry:
    """SQLite-backed map identifier -> ChecksumEntry. Use as a context manager or call close()."""

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout_s,   # one thread at a time,
                                       check_same_thread=False)   # not always the opener
            with self._db:
                self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"checksum registry {self.path} cannot be opened as SQLite ({exc}); "
                              "point checksum_db at a new file or delete the damaged one") from None

    def __enter__(self) -> "ChecksumRegistry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM checksums").fetchone()[0])

    def is_empty(self) -> bool:
        """Nothing recorded yet (one row looked for: COUNT(*) walks the whole table)."""
        return self._db.execute("SELECT 1 FROM checksums LIMIT 1").fetchone() is None

    def get(self, identifier: str) -> ChecksumEntry | None:
        return self.get_many([identifier]).get(identifier)

    def get_many(self, identifiers: Iterable[str]) -> dict[str, ChecksumEntry]:
        """Recorded entries for those identifiers that have one."""
        found: dict[str, ChecksumEntry] = {}
        for batch in _batches(list(identifiers)):
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(
                f"SELECT identifier, size, mtime_ns, sha256, first_seen FROM checksums "
                f"WHERE identifier IN ({marks})", batch)
            found.update((r[0], ChecksumEntry(*r)) for r in rows)
        return found

    def lookup(self, keys: pa.Array | np.ndarray | list[str]) -> Recorded:
        """The entries of a column of (distinct) keys, as columns aligned with it. One scan of
        the table, read straight into Arrow columns by the ADBC SQLite driver (no Python object
        per entry), when the keys cover much of it; else one IN query per batch. Either way the
        rows are joined on the key by Arrow's hash join."""
        if not isinstance(keys, pa.Array):
            keys = pa.array(np.asarray(keys, dtype=object), pa.string())
        rows_in_table = len(self) if len(keys) else 0
        if rows_in_table == 0:
            return Recorded.none(len(keys))
        if len(keys) >= SCAN_FROM * rows_in_table:
            table = self._scan()
        else:
            rows, wanted = [], keys.to_pylist()
            for batch in _batches(wanted):
                marks = ",".join("?" * len(batch))
                rows += self._db.execute(f"SELECT {_LOOKUP_COLUMNS} FROM checksums "
                                         f"WHERE identifier IN ({marks})", batch).fetchall()
            table = pa.table(list(zip(*rows)) or [[], [], [], []], schema=_LOOKUP_SCHEMA)
        at = pc.index_in(keys, value_set=one_array(table["identifier"]))
        known = at.is_valid().to_numpy(zero_copy_only=False)
        table, columns = table.drop_columns(["identifier"]), {}
        for name, missing in (("sha256", ""), ("size", -1), ("mtime_ns", NO_MTIME)):
            columns[name] = one_array(table[name].take(at)).fill_null(missing)
            table = table.drop_columns([name])     # each read column gone once it is aligned
        return Recorded(known, columns["size"].to_numpy(), columns["mtime_ns"].to_numpy(),
                        columns["sha256"])

    def _scan(self) -> pa.Table:
        """The whole table's lookup columns as Arrow (ADBC reads SQLite in C)."""
        with adbc_sqlite.connect(f"file:{self.path.absolute()}?mode=ro") as conn, \
                conn.cursor() as cursor:
            cursor.execute(f"SELECT {_LOOKUP_COLUMNS} FROM checksums")
            return cursor.fetch_arrow_table().cast(_LOOKUP_SCHEMA)

    def record(self, entries: Iterable[ChecksumEntry]) -> None:
        """Insert or replace whole entries (first sightings, accepted changes) in one transaction."""
        with self._db:
            self._db.executemany(
                "INSERT INTO checksums (identifier, size, mtime_ns, sha256, first_seen) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(identifier) DO UPDATE SET size=excluded.size, "
                "mtime_ns=excluded.mtime_ns, sha256=excluded.sha256, first_seen=excluded.first_seen",
                [(e.identifier, e.size, e.mtime_ns, e.sha256, e.first_seen) for e in entries])

    def refresh_stats(self, stats: Iterable[tuple[str, int, int | None]]) -> None:
        """Update size/mtime of (identifier, size, mtime_ns) whose content hashed as recorded
        (a copy or touch that kept the bytes), so the cheap exists-level check stays quiet."""
        with self._db:
            self._db.executemany("UPDATE checksums SET size=?, mtime_ns=? WHERE identifier=?",
                                 [(size, mtime, ident) for ident, size, mtime in stats])

    def forget(self, identifiers: str | Iterable[str]) -> int:
        """Drop entries, so the next decode-level verification records those files afresh
        (accepting a deliberate change). Returns how many entries were removed."""
        idents = [identifiers] if isinstance(identifiers, str) else list(identifiers)
        removed = 0
        with self._db:
            for batch in _batches(idents):
                marks = ",".join("?" * len(batch))
                removed += self._db.execute(
                    f"DELETE FROM checksums WHERE identifier IN ({marks})", batch).rowcount
        return removed


def _batches(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _BATCH):
        yield items[start:start + _BATCH]
