"""Reading TFRecord files, plain or GZIP.

Reading never trusts a length: the length field's CRC is always checked, and a length larger than
what is left of the file is refused before anything is allocated. Every problem is a FormatError
naming the file and the byte offset of the record (for GZIP files: the offset in the
uncompressed stream, or the compressed offset when the gzip data itself is corrupt).
"""

from __future__ import annotations

import os
import zlib
from typing import Iterator


from ml.errors import FormatError
from ml.formats.tfrecord.framing import (FOOTER_BYTES, FRAMING_BYTES, GZIP, GZIP_MAGIC,
                                         HEADER_BYTES, _U32, _U64, masked_crc32c,
                                         normalize_compression)

READ_BUFFER_BYTES = 1 << 20
MAX_READ_CHUNK = 16 << 20            # a record's data is read in pieces no larger than this
GZIP_INPUT_CHUNK = 64 << 10

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
