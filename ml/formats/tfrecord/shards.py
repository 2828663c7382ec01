"""Shards: `{split}-{i:05d}-of-{n:05d}.tfrecord` (+ `.idx`). ShardWriter wraps the one-file
writer (as webdataset's ShardWriter wraps TarWriter): it fills each shard up to a target size,
writes every shard under a temporary name and renames them all only at close, so no
final-named shard exists before all of them are complete. Finding and assigning shards to
loader workers lives here too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

from ml.atomic import CommitOnExit
from ml.errors import ConfigError, FormatError
from ml.formats.tfrecord.framing import FRAMING_BYTES, INDEX_SUFFIX, Record
from ml.formats.tfrecord.writer import (PROGRESS_STEP, TFRecordFileInfo, PendingFile, RecordSink,
                                        remove_quietly, record_pieces)
from ml.progress import Progress

SHARD_SUFFIX = ".tfrecord"
_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
T = TypeVar("T")

def shard_name(split: str, index: int, count: int) -> str:
    """`{split}-{index:05d}-of-{count:05d}.tfrecord`."""
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def _shard_pattern(split: str) -> re.Pattern:
    return re.compile(re.escape(split) + r"-(\d{5})-of-(\d{5})" + re.escape(SHARD_SUFFIX))


def check_split_name(split: str) -> str:
    if not isinstance(split, str) or not _SPLIT_NAME.fullmatch(split):
        raise ConfigError(f"split name {split!r} cannot name shard files: use letters, digits, "
                          "'_', '.' and '-', starting with a letter or digit")
    return split


@dataclass(frozen=True)
class ShardSummary:
    """The shards of one split as written: paths, records, bytes and sha256 per shard."""

    split: str
    shards: tuple[TFRecordFileInfo, ...]

    @property
    def paths(self) -> list[Path]:
        return [s.path for s in self.shards]

    @property
    def records_per_shard(self) -> list[int]:
        return [s.records for s in self.shards]

    @property
    def bytes_per_shard(self) -> list[int]:
        return [s.bytes for s in self.shards]

    @property
    def sha256_per_shard(self) -> list[str | None]:
        return [s.sha256 for s in self.shards]

    @property
    def total_records(self) -> int:
        return sum(self.records_per_shard)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_per_shard)

    def as_dict(self) -> dict:
        """A JSON-ready description (for asset metadata and manifests)."""
        return {
            "split": self.split,
            "shards": [{"path": str(s.path),
                        "index_path": str(s.index_path) if s.index_path else None,
                        "records": s.records, "bytes": s.bytes, "sha256": s.sha256}
                       for s in self.shards],
            "total_records": self.total_records,
            "total_bytes": self.total_bytes,
        }


class ShardWriter(CommitOnExit):
    """Writes the records of one split into shards of about `target_shard_bytes` each.

    A new shard starts when the next record would take the current one past the target (a record
    larger than the target gets a shard of its own). Shards are written under temporary names
    and renamed to `{split}-{i:05d}-of-{n:05d}.tfrecord` (+ `.idx`) only at close(), once all are
    complete; shards of the same split left by an earlier run with another count are then
    removed. On an exception (context manager) every temporary file is removed. Each shard's
    sha256 is computed while writing unless `sha256=False`.
    """

    def __init__(self, out_dir: str | os.PathLike, split: str, target_shard_bytes: int,
                 write_index: bool = True, sha256: bool = True):
        if int(target_shard_bytes) <= 0:
            raise ConfigError(f"target_shard_bytes must be positive, got {target_shard_bytes}")
        self.out_dir = Path(out_dir)
        self.split = check_split_name(split)
        self.target = int(target_shard_bytes)
        self.write_index = write_index
        self.sha256 = sha256
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._pending: list[PendingFile] = []
        self._current: PendingFile | None = None
        self._sink: RecordSink | None = None      # the current shard's, for write()
        self._aborted = False
        self.summary: ShardSummary | None = None

    def _check_open(self) -> None:
        if self.summary is not None or self._aborted:
            state = "closed" if self.summary is not None else "aborted"
            raise ValueError(f"shard writer for {self.out_dir / self.split} is {state}")

    def write(self, record: Record) -> None:
        """Append one record (bytes, or a list of pieces written as their concatenation)."""
        pieces, length = record_pieces(record)
        sink = self._sink                  # None before the first record and once closed
        if sink is None or (sink.stream_bytes
                            and sink.stream_bytes + length + FRAMING_BYTES > self.target):
            sink = self._start_shard().sink
        sink.write(pieces, length)

    def _start_shard(self) -> PendingFile:
        self._check_open()
        if self._current is not None:
            self._current.seal()         # its fsync overlaps writing the next shard
        hint = self.out_dir / f"{self.split}-{len(self._pending):05d}{SHARD_SUFFIX}"
        self._current = PendingFile(hint, None, self.write_index, self.sha256)
        self._sink = self._current.sink
        self._pending.append(self._current)
        return self._current

    def close(self) -> ShardSummary:
        """Finish every shard, then rename them all into place; returns the summary."""
        if self.summary is not None:
            return self.summary
        self._check_open()
        try:
            if not self._pending:
                self._start_shard()          # an empty split is one empty shard
            for pending in self._pending:
                pending.finish()
        except BaseException:
            self.abort()
            raise
        self._current = self._sink = None
        count = len(self._pending)
        infos = tuple(p.commit(self.out_dir / shard_name(self.split, i, count))
                      for i, p in enumerate(self._pending))
        self._remove_stale_shards({info.path.name for info in infos})
        self.summary = ShardSummary(self.split, infos)
        return self.summary

    def _remove_stale_shards(self, keep: set[str]) -> None:
        pattern = _shard_pattern(self.split)
        for path in self.out_dir.iterdir():
            name = path.name[:-len(INDEX_SUFFIX)] if path.name.endswith(INDEX_SUFFIX) else path.name
            if pattern.fullmatch(name) and name not in keep:
                remove_quietly(path)

    def abort(self) -> None:
        """Remove every temporary shard; no final-named file was created."""
        self._aborted = True
        for pending in self._pending:
            pending.discard()
        self._pending.clear()
        self._current = self._sink = None


def shuffled_order(count: int, seed: int | None) -> list[int]:
    """0..count-1 permuted by `seed` (numpy PCG64, identical on every machine); None: in order."""
    if seed is None:
        return list(range(count))
    return np.random.default_rng(seed).permutation(count).tolist()


def write_shards(items: Sequence[T], to_record: Callable[[T], Record],
                 out_dir: str | os.PathLike, split: str, target_shard_bytes: int,
                 seed: int | None = 0, write_index: bool = True,
                 progress: Progress | None = None, sha256: bool = True) -> ShardSummary:
    """Shuffle `items` with `seed` (None keeps their order), turn each into a record with
    `to_record` (e.g. read a JPEG and make_image_example_parts) and write the split's shards
    (with each shard's sha256 unless `sha256=False`)."""
    progress = progress or Progress(len(items), what=f"{split} TFRecord shards")
    order = shuffled_order(len(items), seed)
    with ShardWriter(out_dir, split, target_shard_bytes, write_index, sha256) as writer:
        write = writer.write
        for start in range(0, len(order), PROGRESS_STEP):
            chunk = order[start:start + PROGRESS_STEP]
            for position in chunk:
                write(to_record(items[position]))
            progress.advance(len(chunk))
    progress.finish()
    return writer.close()


def find_shards(out_dir: str | os.PathLike, split: str) -> list[Path]:
    """The complete, ordered shard set of `split` in `out_dir`; FormatError if it is partial."""
    out_dir = Path(out_dir)
    pattern = _shard_pattern(check_split_name(split))
    found: dict[int, set[int]] = {}
    for path in out_dir.iterdir() if out_dir.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if match:
            found.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
    if not found:
        raise FormatError(out_dir, None, f"no shards named {shard_name(split, 0, 1)} and "
                          "similar: write the split first")
    if len(found) > 1:
        raise FormatError(out_dir, None, f"shards of split {split!r} from runs with different "
                          f"shard counts {sorted(found)}: rewrite the split")
    count, indices = next(iter(found.items()))
    missing = sorted(set(range(count)) - indices)
    if missing:
        raise FormatError(out_dir, None, f"split {split!r} is missing shards "
                          f"{[shard_name(split, i, count) for i in missing[:5]]}")
    return [out_dir / shard_name(split, i, count) for i in range(count)]


def assign_shards(shards: Sequence[T], worker_id: int, num_workers: int, rank: int,
                  world_size: int, seed: int | None = None, epoch: int = 0) -> list[T]:
    """The shards one DataLoader worker of one distributed rank reads this epoch.

    Global worker g = rank * num_workers + worker_id of G = world_size * num_workers takes every
    G-th shard starting at g, after an optional permutation by (seed, epoch). Over all workers
    and ranks the result is a partition: every shard exactly once. With fewer shards than G some
    workers get none, so write at least G shards.
    """
    for name, value, bound in (("num_workers", num_workers, None),
                               ("world_size", world_size, None),
                               ("worker_id", worker_id, num_workers), ("rank", rank, world_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if bound is None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
        if bound is not None and not 0 <= value < bound:
            raise ConfigError(f"{name} must be in [0, {bound}), got {value}")
    ordered = list(shards)
    if seed is not None:
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(len(ordered))
        ordered = [ordered[i] for i in order]
    total = world_size * num_workers
    return ordered[rank * num_workers + worker_id::total]
