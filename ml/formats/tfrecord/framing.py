"""TFRecord framing: the byte layout of one record, its masked CRC-32C, and the names of
compression and index files.

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
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Sequence, Union

import crc32c

from ml.errors import ConfigError

HEADER_BYTES = 12                    # uint64 length + uint32 masked CRC of the length
FOOTER_BYTES = 4                     # uint32 masked CRC of the data
FRAMING_BYTES = HEADER_BYTES + FOOTER_BYTES
MASK_DELTA = 0xA282EAD8
GZIP = "GZIP"
GZIP_MAGIC = b"\x1f\x8b\x08"
INDEX_SUFFIX = ".idx"
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_U32_PACK = _U32.pack
_crc32c = crc32c.crc32c
Record = Union[bytes, Sequence[bytes]]   # one record's data, whole or as pieces to concatenate

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
