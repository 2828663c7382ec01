"""MXNet RecordIO (.rec + .idx), read and written natively, byte-compatible with mxnet 1.9.1.

Byte layout of a `.rec` file (all integers little-endian):
- A record is stored as one or more *parts*. Each part is `magic:u32 = 0xCED7230A`,
  `lrec:u32 = cflag << 29 | length`, then `length` data bytes, then zero bytes up to the next
  multiple of 4. Parts therefore always start at 4-byte-aligned offsets.
- cflag 0 = a whole record. A record whose bytes hold the magic word at a 4-byte-aligned offset
  is split there (dmlc-core `RecordIOWriter::WriteRecord`): the magic word is dropped, the bytes
  before it become a part with cflag 1 (first) or 2 (middle), the rest ends with a part of cflag 3.
  A reader joins the parts and puts the magic word back between them. Only the final part is
  padded (the others end on a 4-byte boundary by construction).
- A record must be shorter than 2^29 bytes (29 length bits).

A record written by `mxnet.recordio.pack` starts with an IRHeader, struct `<IfQQ` (24 bytes):
`flag:u32, label:f32, id:u64, id2:u64`. When flag > 0 the label is an array of `flag` float32
values that follows the header, and the header's label field is 0.

The `.idx` file is text, one line per record, `"<key>\\t<byte offset of its first part>\\n"`,
in the order the records were written (mxnet `MXIndexedRecordIO.write_idx`).

Readers use `os.pread` on a descriptor opened lazily per process (a reader made before a fork,
e.g. in a DataLoader's parent, reopens in the child), hold the index as two numpy arrays (no
per-key Python objects for a forked worker to copy), check every length against the bytes that
remain before reading, and raise only `FormatError(path, byte offset, problem)` for a bad file.
"""

from __future__ import annotations

import io
import numbers
import operator
import os
import struct
from array import array
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np

from ml.atomic import commit_with_sidecar, temp_sibling
from ml.errors import FormatError
from ml.formats.file_access import OutputFile, PreadFile, write_error

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29
LENGTH_MASK = (1 << LENGTH_BITS) - 1
MAX_RECORD_BYTES = LENGTH_MASK          # dmlc-core refuses records of 2^29 bytes or more
CFLAG_WHOLE, CFLAG_START, CFLAG_MIDDLE, CFLAG_END = 0, 1, 2, 3
PART_HEAD = struct.Struct("<II")        # magic, lrec
IR_STRUCT = struct.Struct("<IfQQ")      # flag, label, id, id2
IR_SIZE = IR_STRUCT.size                # 24
IDX_SUFFIX = ".idx"

_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")     # indexed by length % 4
_HEADER_LABEL_PREFETCH = 16                     # label floats read with a header in one pread
_WRITE_CHUNK = 1 << 20
_BATCHED_RECORD_LIMIT = 64 << 10              # smaller records are framed and scanned in batches


class IRHeader(NamedTuple):
    """mxnet's image-record header: flag, label (float, or float32 array when flag > 0), id, id2."""

    flag: int
    label: Any
    id: int
    id2: int


# --------------------------------------------------------------------------------------------
# IRHeader packing (mxnet.recordio.pack / unpack)


def pack_header(header: IRHeader | tuple, payload: bytes) -> bytes:
    """Prefix `payload` with an IRHeader, exactly as `mxnet.recordio.pack` does.

    A numeric label is stored in the header (flag 0, whatever `header.flag` says); any other
    label is converted to a float32 array that follows the header, with flag = its size and
    the header's label field 0.
    """
    return header_bytes(header) + bytes(payload)


def header_bytes(header: IRHeader | tuple) -> bytes:
    """The IRHeader (and label array) that `pack_header` puts before the payload."""
    _, label, record_id, record_id2 = header
    try:
        if type(label) is float or type(label) is int or isinstance(label, numbers.Number):
            return IR_STRUCT.pack(0, label, record_id, record_id2)
        labels = np.asarray(label, dtype="<f4").ravel()
        return IR_STRUCT.pack(labels.size, 0.0, record_id, record_id2) + labels.tobytes()
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"cannot pack IRHeader {tuple(header)!r}: {exc}") from exc


def unpack_header(record: bytes, source: str = "record",
                  offset: int | None = None) -> tuple[IRHeader, bytes]:
    """Split a record into its IRHeader and payload, like `mxnet.recordio.unpack`.

    With flag > 0 the header's label is a read-only float32 array of `flag` values.
    `source` and `offset` only name the record in the FormatError raised for a short record.
    """
    if len(record) < IR_SIZE:
        raise FormatError(source, offset, f"record of {len(record)} bytes is shorter than the "
                                          f"{IR_SIZE}-byte IRHeader; this is not an image record")
    flag, label, record_id, record_id2 = IR_STRUCT.unpack_from(record)
    if flag == 0:
        return IRHeader(0, label, record_id, record_id2), record[IR_SIZE:]
    label_end = IR_SIZE + 4 * flag
    if label_end > len(record):
        raise FormatError(source, offset, f"IRHeader flag says {flag} float32 labels "
                                          f"({4 * flag} bytes) but only {len(record) - IR_SIZE} "
                                          "bytes follow the header")
    labels = np.frombuffer(record, dtype="<f4", count=flag, offset=IR_SIZE)
    return IRHeader(flag, labels, record_id, record_id2), record[label_end:]


# --------------------------------------------------------------------------------------------
# Part framing (dmlc-core RecordIOWriter::WriteRecord)


def _magic_words(data: bytes) -> np.ndarray:
    """Mask of the 4-byte-aligned words of `data` that equal the magic word."""
    return np.frombuffer(data, dtype="<u4", count=len(data) >> 2) == MAGIC


def has_aligned_magic(data: bytes) -> bool:
    """Whether `data` holds the magic word at a 4-byte-aligned offset (so it must be split)."""
    return bool(_magic_words(data).any())


def aligned_magic_offsets(record: bytes) -> list[int]:
    """Offsets where the magic word occurs at a 4-byte-aligned position (the split points)."""
    return (np.flatnonzero(_magic_words(record)) * 4).tolist()


def frame_record(record: bytes) -> list[bytes]:
    """The on-disk pieces of one record: part headers, data and padding, in file order."""
    size = len(record)
    if size > MAX_RECORD_BYTES:
        raise ValueError(f"a RecordIO record must be shorter than 2^29 bytes; got {size} bytes")
    if not has_aligned_magic(record):
        return [PART_HEAD.pack(MAGIC, size), record, _PADDING[size & 3]]
    pieces = []
    start = 0
    for at in aligned_magic_offsets(record):
        cflag = CFLAG_START if start == 0 else CFLAG_MIDDLE
        pieces += [PART_HEAD.pack(MAGIC, cflag << LENGTH_BITS | (at - start)), record[start:at]]
        start = at + 4
    pieces += [PART_HEAD.pack(MAGIC, CFLAG_END << LENGTH_BITS | (size - start)), record[start:],
               _PADDING[size & 3]]
    return pieces


# --------------------------------------------------------------------------------------------
# Reading


class _RecFile(PreadFile):
    """A .rec file read with pread through a descriptor opened lazily, once per process.

    It is opened at once, which records the file's identity: a process that reopens it (after a
    fork) checks that it is still the same file (device, inode, size, mtime) that the index was
    built from.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__(path, what="RecordIO file")
        self.descriptor()

    def read_part_head(self, offset: int, expect_first: bool) -> tuple[int, int]:
        """Validate the part header at `offset`; return (cflag, data length)."""
        left = self.size - offset
        if left < PART_HEAD.size:
            raise FormatError(self.path, offset, f"record header cut off: {left} bytes left, "
                                                 f"{PART_HEAD.size} needed (truncated file?)")
        magic, lrec = PART_HEAD.unpack(self.pread(PART_HEAD.size, offset))
        if magic != MAGIC:
            raise FormatError(self.path, offset, f"bad magic 0x{magic:08X} (expected "
                                                 f"0x{MAGIC:08X}): not the start of a record")
        cflag, length = lrec >> LENGTH_BITS, lrec & LENGTH_MASK
        if expect_first and cflag not in (CFLAG_WHOLE, CFLAG_START):
            raise FormatError(self.path, offset, f"record starts with a continuation part "
                                                 f"(cflag {cflag})")
        if not expect_first and cflag not in (CFLAG_MIDDLE, CFLAG_END):
            raise FormatError(self.path, offset, f"split record broken: expected a continuation "
                                                 f"part (cflag 2 or 3), found cflag {cflag}")
        padded = (length + 3) & ~3
        if padded > left - PART_HEAD.size:
            raise FormatError(self.path, offset, f"part length {length} runs past the end of the "
                                                 f"file ({left - PART_HEAD.size} bytes left)")
        return cflag, length

    def read_record(self, offset: int) -> tuple[bytes, int]:
        """The record whose first part is at `offset`, and the offset just after it.

        Every part consumes at least 8 bytes of a file whose size is fixed, so a chain of
        continuation parts ends at the end of the file at the latest.
        """
        parts = []
        position = offset
        while True:
            cflag, length = self.read_part_head(position, expect_first=not parts)
            parts.append(self.pread(length, position + PART_HEAD.size) if length else b"")
            position += PART_HEAD.size + ((length + 3) & ~3)
            if cflag in (CFLAG_WHOLE, CFLAG_END):
                break
        record = parts[0] if len(parts) == 1 else MAGIC_BYTES.join(parts)
        return record, position

    def read_prefix(self, offset: int, count: int) -> bytes:
        """The first `count` bytes of the record at `offset` (fewer if the record is shorter)."""
        cflag, length = self.read_part_head(offset, expect_first=True)
        if cflag == CFLAG_WHOLE or length >= count:
            return self.pread(min(count, length), offset + PART_HEAD.size)
        return self.read_record(offset)[0][:count]

    def iter_records(self) -> Iterator[tuple[int, bytes]]:
        """(offset, record) for every record from offset 0 to the end of the file."""
        position = 0
        while position < self.size:
            record, following = self.read_record(position)
            yield position, record
            position = following

    def scan_offsets(self) -> np.ndarray:
        """Offsets of every record's first part, reading only the 8-byte part headers."""
        offsets = []
        position = 0
        expect_first = True
        while position < self.size:
            cflag, length = self.read_part_head(position, expect_first)
            if expect_first:
                offsets.append(position)
            expect_first = cflag in (CFLAG_WHOLE, CFLAG_END)
            position += PART_HEAD.size + ((length + 3) & ~3)
        if not expect_first:
            raise FormatError(self.path, position, "file ends inside a split record")
        return np.asarray(offsets, dtype=np.int64)


def _line_start(content: bytes, line_number: int) -> int:
    """Byte offset where 0-based line `line_number` of `content` starts."""
    newlines = np.flatnonzero(np.frombuffer(content, dtype=np.uint8) == 0x0A)
    return 0 if line_number == 0 else int(newlines[line_number - 1]) + 1


def _parse_idx_strict(content: bytes, path: Path) -> np.ndarray:
    """Parse .idx text line by line; the first bad line is a FormatError at its byte offset."""
    rows = []
    position = 0
    for line in content.split(b"\n"):
        start, position = position, position + len(line) + 1
        if not line.strip():
            continue
        fields = line.rstrip(b"\r").split(b"\t")
        try:
            if len(fields) != 2:
                raise ValueError(f"{len(fields)} tab-separated fields")
            rows.append((int(fields[0].decode("ascii")), int(fields[1].decode("ascii"))))
        except ValueError as exc:
            shown = line[:60].decode("ascii", "backslashreplace")
            raise FormatError(path, start, f"bad index line {shown!r} ({exc}); expected "
                                           "'<integer key>\\t<byte offset>'") from None
        if not (-2**63 <= rows[-1][0] < 2**63 and 0 <= rows[-1][1] < 2**63):
            raise FormatError(path, start, "index line holds a number outside 64 bits")
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def _parse_idx(content: bytes, path: Path) -> np.ndarray:
    """(n, 2) int64 array of (key, offset) rows: numpy's C parser, strict parser on trouble."""
    if not content.strip():
        return np.zeros((0, 2), dtype=np.int64)
    try:
        rows = np.loadtxt(io.BytesIO(content), dtype=np.int64, delimiter="\t", comments=None,
                          ndmin=2)
        if rows.shape[1] == 2:
            return rows
    except (ValueError, OverflowError, UnicodeError):
        pass
    return _parse_idx_strict(content, path)


class KeyTable:
    """Keys -> record offsets, held as int64 arrays (file order), looked up without a dict."""

    def __init__(self, keys: np.ndarray, offsets: np.ndarray):
        self.keys = np.ascontiguousarray(keys, dtype=np.int64)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.keys.flags.writeable = False
        self.offsets.flags.writeable = False
        count = len(self.keys)
        self._base = int(self.keys[0]) if count else 0
        self._dense = bool(count == 0 or (self.keys[-1] - self._base == count - 1 and
                                          np.all(np.diff(self.keys) == 1)))
        if not self._dense:
            order = np.argsort(self.keys, kind="stable")
            self._sorted_keys = self.keys[order]
            self._sorted_offsets = self.offsets[order]
            self._order = order

    def first_duplicate(self) -> int | None:
        """Position (in file order) of the first key that repeats an earlier one, or None."""
        if self._dense:
            return None
        repeats = np.flatnonzero(self._sorted_keys[1:] == self._sorted_keys[:-1])
        return int(self._order[repeats + 1].min()) if len(repeats) else None

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        try:
            self.offset_of(operator.index(key))
        except (KeyError, TypeError):
            return False
        return True

    def offset_of(self, key: int) -> int:
        """The offset of `key`'s record; KeyError when the index has no such key."""
        if self._dense:
            position = key - self._base
            if 0 <= position < len(self.keys):
                return int(self.offsets[position])
            raise KeyError(key)
        position = int(np.searchsorted(self._sorted_keys, key))
        if position < len(self._sorted_keys) and self._sorted_keys[position] == key:
            return int(self._sorted_offsets[position])
        raise KeyError(key)

    def offsets_of(self, keys: np.ndarray) -> np.ndarray:
        """Vectorised offset_of; KeyError naming the first missing key."""
        keys = np.asarray(keys, dtype=np.int64)
        if self._dense:
            positions = keys - self._base
            missing = (positions < 0) | (positions >= len(self.keys))
            if missing.any():
                raise KeyError(int(keys[np.argmax(missing)]))
            return self.offsets[positions]
        positions = np.minimum(np.searchsorted(self._sorted_keys, keys), len(self.keys) - 1)
        missing = self._sorted_keys[positions] != keys
        if missing.any():
            raise KeyError(int(keys[np.argmax(missing)]))
        return self._sorted_offsets[positions]


def load_idx(idx_path: str | os.PathLike, rec_size: int) -> KeyTable:
    """Read and validate an .idx file against the size of its .rec file."""
    path = Path(idx_path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise FormatError(path, None, f"cannot read index file ({exc.strerror})") from exc
    rows = _parse_idx(content, path)
    keys, offsets = rows[:, 0], rows[:, 1]
    outside = (offsets < 0) | (offsets > rec_size - PART_HEAD.size)
    bad = np.flatnonzero(outside | (offsets & 3 != 0))
    if len(bad):
        line = int(bad[0])
        where = (f"past the end of the .rec file ({rec_size} bytes)" if outside[line] else
                 "not 4-byte aligned, so no record can start there")
        raise FormatError(path, _line_start(content, line),
                          f"key {int(keys[line])} points at byte {int(offsets[line])}, {where}; "
                          "the index does not belong to this .rec or one of them is damaged")
    table = KeyTable(keys, offsets)
    duplicate = table.first_duplicate()
    if duplicate is not None:
        raise FormatError(path, _line_start(content, duplicate),
                          f"key {int(keys[duplicate])} is listed twice")
    return table


def sibling_idx_path(rec_path: str | os.PathLike) -> Path:
    """`train.rec` -> `train.idx`."""
    return Path(rec_path).with_suffix(IDX_SUFFIX)


class RecordIOReader:
    """Random and sequential access to a .rec file.

    With an .idx (given, or the `.idx` sibling of the .rec when `idx_path` is None) the keys
    are the index's keys. Without one (`idx_path=False`, or no sibling) the keys are the
    records' positions 0, 1, ... found by scanning the part headers on first random access.
    """

    def __init__(self, rec_path: str | os.PathLike,
                 idx_path: str | os.PathLike | None | bool = None):
        self.rec_path = Path(rec_path)
        self._file = _RecFile(self.rec_path)
        if idx_path is None:
            candidate = sibling_idx_path(self.rec_path)
            idx_path = candidate if candidate.is_file() else False
        self.idx_path = Path(idx_path) if idx_path is not False else None
        self._table = load_idx(self.idx_path, self._file.size) if self.idx_path else None

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's descriptor (a later read reopens it)."""
        self._file.close()

    @property
    def table(self) -> KeyTable:
        """The key -> offset table (scanned from the .rec on first use when there is no .idx)."""
        if self._table is None:
            offsets = self._file.scan_offsets()
            self._table = KeyTable(np.arange(len(offsets), dtype=np.int64), offsets)
        return self._table

    @property
    def keys(self) -> np.ndarray:
        """The keys in index (file) order, a read-only int64 array."""
        return self.table.keys

    @property
    def size(self) -> int:
        """Size of the .rec file in bytes."""
        return self._file.size

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, key: object) -> bool:
        return key in self.table

    def offset_of(self, key: int) -> int:
        """Byte offset of `key`'s record; KeyError for an unknown key."""
        return self.table.offset_of(operator.index(key))

    def read(self, key: int) -> bytes:
        """The record stored under `key` (IRHeader included)."""
        return self._file.read_record(self.offset_of(key))[0]

    def read_unpacked(self, key: int) -> tuple[IRHeader, bytes]:
        """`key`'s record split into IRHeader and payload."""
        offset = self.offset_of(key)
        return unpack_header(self._file.read_record(offset)[0], str(self.rec_path), offset)

    def read_header(self, key: int) -> IRHeader:
        """`key`'s IRHeader (and label array) without reading the payload."""
        offset = self.offset_of(key)
        head = self._file.read_prefix(offset, IR_SIZE + 4 * _HEADER_LABEL_PREFETCH)
        if len(head) >= IR_SIZE:
            flag = IR_STRUCT.unpack_from(head)[0]
            if flag > _HEADER_LABEL_PREFETCH:
                head = self._file.read_prefix(offset, IR_SIZE + 4 * flag)
        return unpack_header(head, str(self.rec_path), offset)[0]

    def read_labels(self, keys: np.ndarray, width: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Flags and the first `width` label values of many records, reading only their headers.

        Returns (flags: uint32[n], labels: float32[n, width]): for flag 0 column 0 holds the
        header's label; for flag > 0 the first min(flag, width) values of the label array.
        Missing values are NaN. 32 + 4*width bytes per record, gathered through a memory map
        (ml/formats/file_access.py); records that need more (split headers, or damage to
        report) go through `read_header`.
        """
        keys = np.asarray(keys, dtype=np.int64)
        offsets = self.table.offsets_of(keys)
        head_bytes = PART_HEAD.size + IR_SIZE + 4 * width
        size = self._file.size
        raw = self._file.gather(offsets, head_bytes)      # zeros past the end: not `fast`
        heads = np.frombuffer(raw, dtype=np.dtype([
            ("magic", "<u4"), ("lrec", "<u4"), ("flag", "<u4"), ("label", "<f4"),
            ("id", "<u8"), ("id2", "<u8"), ("labels", "<f4", (width,))]))
        flags = heads["flag"].copy()
        cflag = heads["lrec"] >> LENGTH_BITS
        length = (heads["lrec"] & LENGTH_MASK).astype(np.int64)
        fits = PART_HEAD.size + ((length + 3) & ~3) <= size - offsets
        whole_ok = (cflag == CFLAG_WHOLE) & (length >= IR_SIZE + 4 * flags.astype(np.int64))
        first_ok = (cflag == CFLAG_START) & (length >= IR_SIZE + 4 * np.minimum(flags, width))
        fast = (heads["magic"] == MAGIC) & fits & (whole_ok | first_ok)
        labels = np.full((len(keys), width), np.nan, dtype=np.float32)
        columns = np.arange(width)
        from_array = (flags[:, None] > columns[None, :]) & fast[:, None]
        labels[from_array] = heads["labels"][from_array]
        scalar = fast & (flags == 0)
        labels[scalar, 0] = heads["label"][scalar]
        for position in np.flatnonzero(~fast).tolist():
            header = self.read_header(int(keys[position]))
            flags[position] = header.flag
            if header.flag == 0:
                labels[position, 0] = header.label
            else:
                shown = min(header.flag, width)
                labels[position, :shown] = header.label[:shown]
        return flags, labels

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        """(key, record) pairs in file order."""
        if self._table is None:
            for position, (_, record) in enumerate(self._file.iter_records()):
                yield position, record
            return
        order = np.argsort(self._table.offsets, kind="stable")
        keys, offsets = self._table.keys[order].tolist(), self._table.offsets[order].tolist()
        for key, offset in zip(keys, offsets):
            yield key, self._file.read_record(offset)[0]


def iter_records(rec_path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """(byte offset, record) for every record of a .rec file, read sequentially (no .idx)."""
    rec_file = _RecFile(rec_path)
    try:
        yield from rec_file.iter_records()
    finally:
        rec_file.close()


# --------------------------------------------------------------------------------------------
# Writing


class RecordIOWriter:
    """Sequential writer of a .rec file and (optionally) its .idx, committed atomically.

    Small records are batched (~1 MiB): a batch is framed as whole records, joined, and one
    vectorised scan of its aligned words confirms that no record needs the magic-word split
    (the rare batch that does is re-framed record by record). Records of 64 KiB or more are
    scanned on their own and written with `os.writev` straight from the caller's buffers;
    `write_packed` adds the IRHeader without copying the payload. The .idx line of a record is
    written when its batch is.

    `close()` fsyncs both temporaries and puts them in place with
    ml.atomic.commit_with_sidecar, so a reader never pairs a new .rec with an old .idx. An exception inside
    `with RecordIOWriter(...)` (or `abort()`) removes the temporaries and leaves any previous
    files untouched. With `sha256=True` the .rec's sha256 is computed on a helper thread while
    writing (hashlib releases the GIL on large buffers).
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None,
                 *, sha256: bool = False):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else None
        self.rec_path.parent.mkdir(parents=True, exist_ok=True)
        self._rec_tmp = temp_sibling(self.rec_path)
        self._idx_tmp = temp_sibling(self.idx_path) if self.idx_path else None
        self._out = OutputFile(self._rec_tmp, sha256)
        self._idx_file = open(self._idx_tmp, "xb") if self._idx_tmp else None
        self._batch: list[tuple[int, bytes, bytes]] = []
        self._batch_bytes = 0
        self._position = 0
        self._keys = array("q")
        self._max_key = -2**63 - 1
        self._key_set: set[int] | None = None
        self.closed = False
        self.sha256: str | None = None

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def count(self) -> int:
        """Records written so far."""
        return len(self._keys)

    @property
    def position(self) -> int:
        """Size of the .rec written so far (flushes the current batch)."""
        if not self.closed:
            self._flush_batch()
        return self._position

    def write(self, key: int, record: bytes) -> None:
        """Append `record` under integer `key`. Keys must be unique."""
        self._append(key, record if isinstance(record, bytes) else bytes(record), b"")

    def write_packed(self, key: int, header: IRHeader | tuple, payload: bytes) -> None:
        """`write(key, pack_header(header, payload))` without copying the payload."""
        self._append(key, header_bytes(header),
                     payload if type(payload) is bytes else bytes(payload))

    def _append(self, key: int, head: bytes, tail: bytes) -> None:
        """Queue head + tail as one record. `head`'s length is a multiple of 4 whenever `tail`
        is not empty, so aligned words of each are aligned words of the record."""
        key = operator.index(key)
        size = len(head) + len(tail)
        if size > MAX_RECORD_BYTES:
            raise ValueError(f"a RecordIO record must be shorter than 2^29 bytes; got {size} bytes")
        if self._key_set is None and key > self._max_key:
            self._max_key = key
            self._keys.append(key)
        else:
            self._claim_repeated_key(key)
        if size < _BATCHED_RECORD_LIMIT:
            self._batch.append((key, head, tail))
            self._batch_bytes += size
            if self._batch_bytes >= _WRITE_CHUNK:
                self._flush_batch()
            return
        self._flush_batch()
        if has_aligned_magic(head) or has_aligned_magic(tail):
            pieces = frame_record(head + tail)
        else:
            pieces = [PART_HEAD.pack(MAGIC, size), head, tail, _PADDING[size & 3]]
        self._emit(pieces, [key], [sum(map(len, pieces))])

    def _claim_repeated_key(self, key: int) -> None:
        """Record a key not above every earlier one, refusing a repeat (the set of written
        keys is built the first time keys stop increasing)."""
        if self._key_set is None:
            self._key_set = set(self._keys)
        if key in self._key_set:
            raise ValueError(f"key {key} was already written to {self.rec_path}")
        self._key_set.add(key)
        self._keys.append(key)

    def _flush_batch(self) -> None:
        """Frame and write the batched small records."""
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch:
            return
        pieces = []
        sizes = []
        part_head, padding = PART_HEAD.pack, _PADDING
        for _, head, tail in batch:
            size = len(head) + len(tail)
            pieces += (part_head(MAGIC, size), head, tail, padding[size & 3])
            sizes.append(8 + size + (-size & 3))
        chunk = b"".join(pieces)
        if int(np.count_nonzero(_magic_words(chunk))) != len(batch):   # a payload holds magic
            framed = [b"".join(frame_record(head + tail)) for _, head, tail in batch]
            chunk, sizes = b"".join(framed), [len(f) for f in framed]
        self._emit([chunk], [key for key, _, _ in batch], sizes)

    def _emit(self, buffers: list[bytes], keys: list[int], framed_sizes: list[int]) -> None:
        """Write framed records (and their .idx lines) at the current position."""
        if self._idx_file is not None:
            lines = []
            offset = self._position
            for key, framed in zip(keys, framed_sizes):
                lines.append(b"%d\t%d\n" % (key, offset))
                offset += framed
            try:
                self._idx_file.write(b"".join(lines))
            except OSError as exc:
                raise write_error(self.idx_path, exc, "writing the index") from None
        self._out.write(buffers)
        self._position += sum(framed_sizes)

    def close(self) -> None:
        """Flush, fsync and rename the files into place (idempotent)."""
        if self.closed:
            return
        try:
            self._flush_batch()
            self._out.close()                 # hashed, fsynced and closed
            self.sha256 = self._out.sha256
            if self._idx_file is not None:
                try:
                    self._idx_file.flush()
                    os.fsync(self._idx_file.fileno())
                except OSError as exc:
                    raise write_error(self.idx_path, exc, "finishing the index") from None
                self._idx_file.close()
            commit_with_sidecar(self._rec_tmp, self.rec_path, self._idx_tmp, self.idx_path)
            self.closed = True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop what was written: close and remove the temporaries, keep the old files."""
        if self.closed:
            return
        self.closed = True
        self._out.abandon()
        if self._idx_file is not None:
            self._idx_file.close()
        for tmp in (self._rec_tmp, self._idx_tmp):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
