"""Index (`<file>.idx`, as NVIDIA DALI's tools/tfrecord2idx writes it): one ASCII line per record,
`"<offset> <size>\\n"`, where offset is where the record's length field starts and size is the
whole framed record, 16 + N. Only uncompressed files have an index.

scan_index / write_index build it from a file, read_index checks one against the file,
IndexedTFRecord reads records by position through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator


from ml.atomic import atomic_write_text
from ml.errors import FormatError
from ml.formats.tfrecord.framing import FRAMING_BYTES, HEADER_BYTES, index_path_for
from ml.formats.tfrecord.reading import (check_data_crc, detect_compression, iter_record_spans,
                                         parse_header)
from ml.formats.tfrecord.writer import index_text

MAX_INDEX_NUMBER_DIGITS = 20

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
