"""TFRecord files written and read natively, without TensorFlow: framing, GZIP, shards, index.

Byte layout of one record (all integers little-endian), as tf.io.TFRecordWriter writes it:

    offset 0   uint64  length          N, the number of data bytes
    offset 8   uint32  masked_crc32c(bytes 0..8, the length field)
    offset 12  N bytes data            usually a serialized tf.train.Example
    offset 12+N uint32 masked_crc32c(data)

    masked_crc32c(b) = ((c >> 15) | (c << 17)) + 0xA282EAD8  (mod 2**32),  c = CRC-32C(b)

A file is records back to back, nothing before, between or after them; an empty file holds no
records. GZIP compression (TF's `compression_type="GZIP"`) is one gzip stream over the whole
framed byte sequence; our writer produces TensorFlow's bytes exactly (zlib default level,
memLevel 9, window 15 + gzip header with mtime 0).

Index (`<file>.idx`, as NVIDIA DALI's tools/tfrecord2idx writes it): one ASCII line per record,
`"<offset> <size>\\n"`, where offset is where the record's length field starts and size is the
whole framed record, 16 + N. Only uncompressed files have an index.

Shards: `{split}-{i:05d}-of-{n:05d}.tfrecord` (+ `.idx`). ShardWriter fills each shard up to a
target size, writes every shard under a temporary name and renames them all only at close, so no
final-named shard exists before all of them are complete.

Reading never trusts a length: the length field's CRC is always checked, and a length larger than
what is left of the file is refused before anything is allocated. Every problem is a FormatError
naming the file and the byte offset of the record (for GZIP files: the offset in the
uncompressed stream, or the compressed offset when the gzip data itself is corrupt).
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar, Union

import crc32c
import numpy as np

from ml.atomic import CommitOnExit, atomic_write_text, commit_with_sidecar, temp_sibling
from ml.errors import ConfigError, FormatError
from ml.formats.file_access import OutputFile
from ml.progress import Progress

HEADER_BYTES = 12                    # uint64 length + uint32 masked CRC of the length
FOOTER_BYTES = 4                     # uint32 masked CRC of the data
FRAMING_BYTES = HEADER_BYTES + FOOTER_BYTES
MASK_DELTA = 0xA282EAD8
GZIP = "GZIP"
GZIP_MAGIC = b"\x1f\x8b\x08"
INDEX_SUFFIX = ".idx"
SHARD_SUFFIX = ".tfrecord"
READ_BUFFER_BYTES = 1 << 20
WRITE_BUFFER_BYTES = 1 << 20         # small records are framed and written in batches this big
DIRECT_WRITE_BYTES = 64 << 10        # records this large are written on their own (no copy)
HEADER_CACHE_SIZE = 1 << 16          # frame headers kept, by record length
PROGRESS_STEP = 64                   # records between progress updates
MAX_READ_CHUNK = 16 << 20            # a record's data is read in pieces no larger than this
GZIP_INPUT_CHUNK = 64 << 10
MAX_INDEX_NUMBER_DIGITS = 20

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_U32_PACK = _U32.pack
_crc32c = crc32c.crc32c
_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

T = TypeVar("T")
Record = Union[bytes, Sequence[bytes]]   # one record's data, whole or as pieces to concatenate


# ------------------------------------------------------------------------------------ framing

def mask_crc(crc: int) -> int:
    """TFRecord's mask of a CRC-32C value."""
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC-32C of `data`."""
    return mask_crc(crc32c.crc32c(data))


def frame_header(length: int) -> bytes:
    """The 12 bytes before a record of `length` data bytes."""
    raw = _U64.pack(length)
    return raw + _U32.pack(masked_crc32c(raw))


def frame_record(data: bytes) -> bytes:
    """One whole framed record: header, data, footer."""
    return frame_header(len(data)) + data + _U32.pack(masked_crc32c(data))


def normalize_compression(compression: str | None) -> str | None:
    """None (or "") for plain files, "GZIP" for gzip; anything else is a ConfigError."""
    if not compression:
        return None
    if isinstance(compression, str) and compression.upper() == GZIP:
        return GZIP
    raise ConfigError(f"TFRecord compression {compression!r} is not supported: use None or "
                      "'GZIP'")


def index_path_for(path: str | os.PathLike) -> Path:
    """Where the DALI index of TFRecord `path` lives: the file's name plus `.idx`."""
    path = Path(path)
    return path.with_name(path.name + INDEX_SUFFIX)


# ------------------------------------------------------------------------------------ writing

@dataclass(frozen=True)
class TFRecordFileInfo:
    """One written TFRecord file: where, its index, how many records, its size and sha256."""

    path: Path
    index_path: Path | None
    records: int
    bytes: int
    sha256: str | None                 # None when written with sha256=False


_HEADERS: dict[int, bytes] = {}      # frame headers by record length: lengths repeat


def _cached_header(length: int) -> bytes:
    header = _HEADERS.get(length)
    if header is None:
        header = frame_header(length)
        if len(_HEADERS) < HEADER_CACHE_SIZE:
            _HEADERS[length] = header
    return header


class _RecordSink:
    """Frames records into a file (gzip-compressing when asked), keeping each record's framed
    size for the DALI index.

    Records under 64 KiB are framed into a batch (header, data pieces, footer) that goes out
    as one joined ~1 MiB write; a larger record flushes the batch and goes out on its own, its
    pieces uncopied. Either way a caller may reuse its buffers once write() returns: small
    pieces that are not `bytes` are copied into the batch on arrival.
    """

    def __init__(self, out: OutputFile, compression: str | None):
        self.out = out
        self.compressor = (zlib.compressobj(-1, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9)
                           if compression == GZIP else None)
        self.stream_bytes = 0
        self.sizes: list[int] = []
        self._batch: list[bytes] = []
        self._batch_bytes = 0

    def write(self, pieces: Sequence[bytes], length: int) -> None:
        """Frame one record whose data is the concatenation of `pieces` (`length` bytes)."""
        size = length + FRAMING_BYTES
        self.sizes.append(size)
        self.stream_bytes += size
        if length >= DIRECT_WRITE_BYTES:
            self._write_alone(pieces, length)
            return
        batch = self._batch
        batch.append(_cached_header(length))
        crc = 0
        for piece in pieces:
            if type(piece) is not bytes:
                piece = bytes(piece)
            crc = _crc32c(piece, crc)
            batch.append(piece)
        batch.append(_U32_PACK(mask_crc(crc)))
        self._batch_bytes += size
        if self._batch_bytes >= WRITE_BUFFER_BYTES:
            self._flush()

    def _write_alone(self, pieces: Sequence[bytes], length: int) -> None:
        """A large record: flush the batch, then write the record's pieces as they are (copied
        only when the helper thread will hash them after write() has returned)."""
        self._flush()
        owned = (pieces if self.out.sha is None
                 else [p if type(p) is bytes else bytes(p) for p in pieces])
        crc = 0
        for piece in owned:
            crc = _crc32c(piece, crc)
        self._emit([_cached_header(length), *owned, _U32_PACK(mask_crc(crc))])

    def _flush(self) -> None:
        if self._batch:
            chunk = b"".join(self._batch)
            self._batch, self._batch_bytes = [], 0
            self._emit([chunk])

    def _emit(self, buffers: list[bytes]) -> None:
        if self.compressor is not None:
            buffers = [self.compressor.compress(b) for b in buffers]
        self.out.write(buffers)

    def index_entries(self) -> Iterator[tuple[int, int]]:
        """(offset, size) of every record written, as the DALI index lists them."""
        return zip(accumulate(self.sizes, initial=0), self.sizes)

    def seal(self) -> None:
        """No more records: write what is batched and the gzip trailer; the file's fsync
        starts in the background."""
        self._flush()
        if self.compressor is not None:
            self.out.write([self.compressor.flush()])
            self.compressor = None
        self.out.seal()


def record_pieces(record: Record) -> tuple[Sequence[bytes], int]:
    """A record's data as (pieces, total length), whether given whole or as pieces."""
    if type(record) is list:               # make_image_example_parts' pieces: the hot path
        return record, sum(map(len, record))
    if isinstance(record, (bytes, bytearray, memoryview)):
        return (record,), len(record)
    return record, sum(map(len, record))


def index_text(entries: Iterable[tuple[int, int]]) -> str:
    """The DALI index of records at `entries` [(offset, size), ...]."""
    return "".join(map("%d %d\n".__mod__, entries))


def _write_index_file(path: Path, entries: Iterable[tuple[int, int]]) -> None:
    _write_durably(path, index_text(entries).encode("ascii"))


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _remove_quietly(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)


class _PendingFile:
    """A TFRecord (and its index) being written under temporary names."""

    def __init__(self, final_hint: Path, compression: str | None, write_index: bool,
                 sha256: bool):
        self.tmp = temp_sibling(final_hint)
        self.tmp_index = temp_sibling(index_path_for(final_hint)) if write_index else None
        self.sink = _RecordSink(OutputFile(self.tmp, sha256), compression)
        self.sealed = False
        self.finished = False

    def seal(self) -> None:
        """No more records: the data file's fsync and the index are done in the background."""
        if not self.sealed:
            self.sealed = True
            self.sink.seal()
            if self.tmp_index is not None:
                self.sink.out.in_background(_write_index_file, self.tmp_index,
                                            self.sink.index_entries())

    def finish(self) -> None:
        """Seal and wait until the data file is written and fsynced."""
        if not self.finished:
            self.seal()
            self.sink.out.close()
            self.finished = True

    def commit(self, final: Path) -> TFRecordFileInfo:
        """Rename into place (ml.atomic.commit_with_sidecar: a crash leaves data without an
        index, never an index of other data)."""
        final_index = index_path_for(final) if self.tmp_index is not None else None
        commit_with_sidecar(self.tmp, final, self.tmp_index, final_index)
        return TFRecordFileInfo(final, final_index, len(self.sink.sizes), self.sink.out.bytes,
                                self.sink.out.sha256)

    def discard(self) -> None:
        self.sink.out.abandon()
        _remove_quietly(self.tmp, self.tmp_index)


class TFRecordWriter(CommitOnExit):
    """Writes one TFRecord file atomically (temporary sibling, renamed into place on close).

    Use as a context manager: on an exception nothing is left behind and an existing file of
    that name is untouched. `write_index=True` also writes the DALI index `<path>.idx`
    (uncompressed files only). `sha256=False` skips the file's sha256 (info.sha256 is None).
    """

    def __init__(self, path: str | os.PathLike, compression: str | None = None,
                 write_index: bool = False, sha256: bool = True):
        self.path = Path(path)
        self.compression = normalize_compression(compression)
        if write_index and self.compression:
            raise ConfigError(f"{self.path}: a DALI index needs an uncompressed TFRecord; "
                              "write without compression or without the index")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: _PendingFile | None = _PendingFile(self.path, self.compression,
                                                          write_index, sha256)
        self.info: TFRecordFileInfo | None = None

    def write(self, record: Record) -> None:
        """Append one record (bytes, or a list of pieces written as their concatenation)."""
        if self._pending is None:
            raise ValueError(f"{self.path}: writer is closed")
        self._pending.sink.write(*record_pieces(record))

    def close(self) -> TFRecordFileInfo:
        """Finish, fsync and rename into place; returns what was written."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                pending.finish()
                self.info = pending.commit(self.path)
            except BaseException:
                pending.discard()
                raise
        if self.info is None:
            raise ValueError(f"{self.path}: writer was aborted, nothing was written")
        return self.info

    def abort(self) -> None:
        """Drop everything written so far; the destination is left as it was."""
        if self._pending is not None:
            self._pending.discard()
            self._pending = None


def write_tfrecord(path: str | os.PathLike, records: Iterable[Record],
                   compression: str | None = None, write_index: bool = False,
                   sha256: bool = True) -> TFRecordFileInfo:
    """Write `records` to one TFRecord file atomically."""
    with TFRecordWriter(path, compression, write_index, sha256) as writer:
        for record in records:
            writer.write(record)
    return writer.close()


# ------------------------------------------------------------------------------------- shards

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
        self._pending: list[_PendingFile] = []
        self._current: _PendingFile | None = None
        self._sink: _RecordSink | None = None      # the current shard's, for write()
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

    def _start_shard(self) -> _PendingFile:
        self._check_open()
        if self._current is not None:
            self._current.seal()         # its fsync overlaps writing the next shard
        hint = self.out_dir / f"{self.split}-{len(self._pending):05d}{SHARD_SUFFIX}"
        self._current = _PendingFile(hint, None, self.write_index, self.sha256)
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
                _remove_quietly(path)

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


# ------------------------------------------------------------------------------------ reading

def detect_compression(path: str | os.PathLike) -> str | None:
    """"GZIP" when the file is a gzip stream, None for a plain TFRecord.

    A plain file starting with the gzip magic bytes would also need a valid length CRC right
    after them, so the two cannot be confused.
    """
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
    if not head.startswith(GZIP_MAGIC):
        return None
    plain = (len(head) == HEADER_BYTES
             and _U32.unpack_from(head, 8)[0] == masked_crc32c(head[:8]))
    return None if plain else GZIP


class _PlainSource:
    """Sequential reads of an uncompressed file, knowing how many bytes are left."""

    def __init__(self, fh, size: int):
        self.fh = fh
        self.size = size

    def read(self, n: int) -> bytes:
        return self.fh.read(n)

    def left(self, position: int) -> int | None:
        return self.size - position


class _GzipSource:
    """Sequential reads of the uncompressed bytes of a gzip file (one or more members),
    decompressing no more than asked for; corrupt gzip data is a FormatError at the
    compressed offset."""

    def __init__(self, fh, path: str):
        self.fh = fh
        self.path = path
        self.decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.file_pos = 0          # compressed bytes read from the file so far
        self.input = b""           # compressed bytes read but not yet given to zlib
        self.ended = False

    def left(self, position: int) -> int | None:
        return None

    def _input(self) -> tuple[bytes, int]:
        """Compressed bytes to feed next and their offset in the file."""
        pending = self.decompressor.unconsumed_tail or self.input
        self.input = b""
        if not pending:
            pending = self.fh.read(GZIP_INPUT_CHUNK)
            self.file_pos += len(pending)
        return pending, self.file_pos - len(pending)

    def _next_member(self) -> None:
        rest = self.decompressor.unused_data
        rest_at = self.file_pos - len(rest)
        while len(rest) < len(GZIP_MAGIC):
            more = self.fh.read(GZIP_INPUT_CHUNK)
            if not more:
                break
            self.file_pos += len(more)
            rest += more
        if not rest:
            self.ended = True
            return
        if not rest.startswith(GZIP_MAGIC):
            raise FormatError(self.path, rest_at, "junk after the end of the gzip stream")
        self.decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.input = rest

    def read(self, n: int) -> bytes:
        out: list[bytes] = []
        want = n
        while want > 0 and not self.ended:
            if self.decompressor.eof:
                self._next_member()
                continue
            data, data_at = self._input()
            if not data:
                raise FormatError(self.path, self.file_pos, "gzip stream ends before its end "
                                  "marker: the file is truncated")
            try:
                chunk = self.decompressor.decompress(data, want)
            except zlib.error as exc:
                raise FormatError(self.path, data_at, f"corrupt gzip data ({exc})") from None
            out.append(chunk)
            want -= len(chunk)
        return b"".join(out)


def _read_exactly(source, n: int, path: str, record_at: int, what: str, where: str) -> bytes:
    """n bytes from `source`, read in bounded pieces so a lying length costs no memory."""
    pieces: list[bytes] = []
    got = 0
    while got < n:
        piece = source.read(min(n - got, MAX_READ_CHUNK))
        if not piece:
            raise FormatError(path, record_at, f"file ends {got} bytes into the record's "
                              f"{n}-byte {what}: the file is truncated{where}")
        pieces.append(piece)
        got += len(piece)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def parse_header(header: bytes, path: str, record_at: int, left: int | None,
                 where: str = "") -> int:
    """The data length of the record whose 12 header bytes are `header`, after checking the
    length's CRC and that the record fits in the `left` bytes after the header (None: unknown).
    `where` is appended to error messages (GZIP: offsets are in the uncompressed stream)."""
    (length,) = _U64.unpack_from(header)
    (stored,) = _U32.unpack_from(header, 8)
    computed = masked_crc32c(header[:8])
    if stored != computed:
        raise FormatError(path, record_at, f"length field CRC mismatch (stored {stored:#010x}, "
                          f"computed {computed:#010x}): the length is corrupt or this is not "
                          f"the start of a TFRecord record{where}")
    if left is not None and length + FOOTER_BYTES > left:
        raise FormatError(path, record_at, f"record length {length} needs {length + 4} more "
                          f"bytes but only {left} are left in the file: truncated file or "
                          "corrupt length")
    return length


def check_data_crc(data: bytes, footer: bytes, path: str, record_at: int,
                   where: str = "") -> None:
    (stored,) = _U32.unpack(footer)
    computed = masked_crc32c(data)
    if stored != computed:
        raise FormatError(path, record_at, f"data CRC mismatch (stored {stored:#010x}, computed "
                          f"{computed:#010x}): the record's {len(data)} data bytes at "
                          f"{record_at + HEADER_BYTES} are corrupt{where}")


def iter_record_spans(path: str | os.PathLike, verify: bool = True,
                      compression: str | None = "auto") -> Iterator[tuple[int, int, bytes]]:
    """Yield (offset, framed size, data) for each record of a TFRecord file, in order.

    `verify=False` skips the data CRC (the length CRC is always checked). `compression` is
    "auto" (detect), None or "GZIP". Offsets of GZIP files are in the uncompressed stream.
    """
    path_str = str(path)
    if compression == "auto":
        compression = detect_compression(path)
    compression = normalize_compression(compression)
    where = " (offset in the uncompressed stream)" if compression else ""
    with open(path, "rb", buffering=READ_BUFFER_BYTES) as fh:
        source = (_GzipSource(fh, path_str) if compression
                  else _PlainSource(fh, os.fstat(fh.fileno()).st_size))
        offset = 0
        while True:
            header = source.read(HEADER_BYTES)
            if not header:
                return
            if len(header) < HEADER_BYTES:
                raise FormatError(path_str, offset, f"file ends {len(header)} bytes into a "
                                  f"12-byte record header: the file is truncated{where}")
            left = source.left(offset + HEADER_BYTES)
            length = parse_header(header, path_str, offset, left, where)
            data = (_read_exactly(source, length, path_str, offset, "data", where)
                    if length else b"")
            footer = _read_exactly(source, FOOTER_BYTES, path_str, offset, "data CRC", where)
            if verify:
                check_data_crc(data, footer, path_str, offset, where)
            yield offset, length + FRAMING_BYTES, data
            offset += length + FRAMING_BYTES


def iter_records(path: str | os.PathLike, verify: bool = True,
                 compression: str | None = "auto") -> Iterator[bytes]:
    """Yield the data of each record of a TFRecord file, checking CRCs unless verify=False."""
    for _, _, data in iter_record_spans(path, verify, compression):
        yield data


# -------------------------------------------------------------------------------------- index

def scan_index(path: str | os.PathLike, verify: bool = True) -> list[tuple[int, int]]:
    """The DALI index entries [(offset, size), ...] of an uncompressed TFRecord, by reading it."""
    if detect_compression(path):
        raise FormatError(path, 0, "is GZIP-compressed: a DALI index (and random access) "
                          "needs an uncompressed TFRecord")
    return [(offset, size) for offset, size, _ in iter_record_spans(path, verify, None)]


def write_index(path: str | os.PathLike, index_path: str | os.PathLike | None = None) -> Path:
    """Write the DALI index of TFRecord `path` (what tools/tfrecord2idx writes, after checking
    every CRC) atomically to `index_path` (default `<path>.idx`)."""
    index_path = Path(index_path) if index_path is not None else index_path_for(path)
    atomic_write_text(index_path, index_text(scan_index(path)))
    return index_path


def read_index(index_path: str | os.PathLike, file_size: int) -> list[tuple[int, int]]:
    """Parse and check a DALI index against its TFRecord's size.

    The entries must tile the file exactly (first at 0, each where the previous ends, the last
    ending at `file_size`), as every index of a whole file does; a truncated, stale or garbled
    index is a FormatError at the byte of the offending line.
    """
    index_path = str(index_path)
    with open(index_path, "rb") as fh:
        raw = fh.read()
    entries: list[tuple[int, int]] = []
    expected = 0
    line_at = 0
    for number, line in enumerate(raw.split(b"\n"), start=1):
        here, line_at = line_at, line_at + len(line) + 1
        if not line.strip():
            continue
        offset, size = _parse_index_line(line, index_path, here, number)
        if offset != expected:
            raise FormatError(index_path, here, f"line {number}: record offset {offset}, but "
                              f"the previous record ends at {expected}: the index does not "
                              "match the file (stale or corrupt index)")
        if size < FRAMING_BYTES or offset + size > file_size:
            raise FormatError(index_path, here, f"line {number}: record of {size} bytes at "
                              f"{offset} does not fit a {file_size}-byte file (records are at "
                              "least 16 bytes): stale or corrupt index")
        entries.append((offset, size))
        expected = offset + size
    if expected != file_size:
        raise FormatError(index_path, len(raw), f"index covers {expected} of the file's "
                          f"{file_size} bytes: truncated or stale index; rebuild it with "
                          "write_index")
    return entries


def _parse_index_line(line: bytes, index_path: str, at: int, number: int) -> tuple[int, int]:
    fields = line.split()
    if (len(fields) != 2
            or not all(f.isdigit() and len(f) <= MAX_INDEX_NUMBER_DIGITS for f in fields)):
        raise FormatError(index_path, at, f"line {number}: expected '<offset> <size>' (two "
                          f"decimal integers), found {line[:60]!r}")
    return int(fields[0]), int(fields[1])


class IndexedTFRecord:
    """Random access to the records of an uncompressed TFRecord file through its DALI index.

    `index_path` defaults to `<path>.idx`; without one the file is scanned once to build the
    index in memory. Records are read with pread, so one instance can be shared by forked
    DataLoader workers; it pickles without its file descriptor.
    """

    def __init__(self, path: str | os.PathLike, index_path: str | os.PathLike | None = None,
                 verify: bool = True):
        self._fd: int | None = None
        self.path = Path(path)
        self.verify = verify
        default_index = index_path_for(self.path)
        if index_path is None and not default_index.exists():
            self.index_path = None
            self.entries = scan_index(self.path, verify)
        else:
            self.index_path = Path(index_path) if index_path is not None else default_index
            self.entries = read_index(self.index_path, self.path.stat().st_size)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> bytes:
        if not -len(self.entries) <= i < len(self.entries):
            raise IndexError(f"record {i} of {len(self.entries)} in {self.path}")
        offset, size = self.entries[i]
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        framed = os.pread(self._fd, size, offset)
        path = str(self.path)
        if len(framed) < size:
            raise FormatError(path, offset, f"file ends {len(framed)} bytes into a {size}-byte "
                              "record: it was truncated after its index was written")
        length = parse_header(framed[:HEADER_BYTES], path, offset, None)
        if length + FRAMING_BYTES != size:
            raise FormatError(path, offset, f"the index {self.index_path} says this record is "
                              f"{size} bytes but its length field says {length + 16}: stale "
                              "index")
        data = framed[HEADER_BYTES:HEADER_BYTES + length]
        if self.verify:
            check_data_crc(data, framed[HEADER_BYTES + length:], path, offset)
        return data

    def __iter__(self) -> Iterator[bytes]:
        for i in range(len(self.entries)):
            yield self[i]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> IndexedTFRecord:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fd"] = None
        return state
