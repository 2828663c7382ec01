"""Writing one TFRecord file (TFRecordWriter, write_tfrecord): records framed and written in
batches, GZIP as TensorFlow writes it, the DALI index beside, both committed together.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Iterable, Iterator, Sequence


from ml.atomic import CommitOnExit, commit_with_sidecar, temp_sibling
from ml.errors import ConfigError
from ml.formats.file_access import OutputFile
from ml.formats.tfrecord.framing import (FRAMING_BYTES, GZIP, Record, _U32_PACK, _crc32c,
                                         frame_header, index_path_for, mask_crc,
                                         normalize_compression)

WRITE_BUFFER_BYTES = 1 << 20         # small records are framed and written in batches this big
DIRECT_WRITE_BYTES = 64 << 10        # records this large are written on their own (no copy)
HEADER_CACHE_SIZE = 1 << 16          # frame headers kept, by record length
PROGRESS_STEP = 64                   # records between progress updates

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


class RecordSink:
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


def remove_quietly(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)


class PendingFile:
    """A TFRecord (and its index) being written under temporary names."""

    def __init__(self, final_hint: Path, compression: str | None, write_index: bool,
                 sha256: bool):
        self.tmp = temp_sibling(final_hint)
        self.tmp_index = temp_sibling(index_path_for(final_hint)) if write_index else None
        self.sink = RecordSink(OutputFile(self.tmp, sha256), compression)
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
        remove_quietly(self.tmp, self.tmp_index)


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
        self._pending: PendingFile | None = PendingFile(self.path, self.compression,
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
