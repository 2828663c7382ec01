"""Memfiles (seed 002): a raw C-order array file plus a `<file>.conf` JSON sidecar.

Byte layout:
- `<file>`: the array's elements in C order, native byte order, no header and no padding;
  its size is exactly prod(shape) * dtype.itemsize bytes.
- `<file>.conf`: UTF-8 JSON object with exactly two keys, `{"shape": [d0, d1, ...],
  "dtype": "<str(np.dtype)>"}`, e.g. `{"shape": [12000, 3, 112, 112], "dtype": "float32"}`.

Writing reserves the whole file first (posix_fallocate on a temporary sibling), so a full disk
is a DatasetError before any data is written, never a SIGBUS from a sparse mmap. Rows are then
appended with ordinary file writes (`MemfileWriter.append`), so a large array never has to sit
whole in memory. Commit (ml.atomic.commit_with_sidecar): fsync both temporaries, move the old
`.conf` and data aside, rename the data into place, then the new `.conf`, remove the old pair,
fsync the folder; a failed rename puts the old pair back. A reader therefore sees either
a matching (data, conf) pair or no `.conf` at all (FormatError "missing .conf"), never new data
described by an old `.conf` of the same byte size but another shape or dtype.

Reading (`open_memfile`) validates the `.conf` against the data file and returns an np.memmap,
read-only unless asked otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ml.atomic import CommitOnExit, commit_with_sidecar, temp_sibling
from ml.errors import DatasetError, FormatError
from ml.formats.file_access import free_bytes

CONF_SUFFIX = ".conf"
CONF_KEYS = ("shape", "dtype")
MAX_CONF_BYTES = 64 * 1024          # a .conf is a few dozen bytes; refuse to parse megabytes
MAX_NDIM = 32
ALLOWED_KINDS = "biufc"             # bool, signed, unsigned, float, complex: plain numbers only
READ_MODES = ("r", "r+", "c")


@dataclass(frozen=True)
class MemfileInfo:
    """What a written memfile holds: where, its shape and dtype, its size and sha256."""

    path: Path
    conf_path: Path
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    sha256: str


def conf_path_for(path: str | os.PathLike) -> Path:
    """The `.conf` sidecar of a memfile: the data file's name plus `.conf`."""
    path = Path(path)
    return path.with_name(path.name + CONF_SUFFIX)


def conf_text(shape: tuple[int, ...], dtype: np.dtype) -> str:
    """The exact `.conf` text the writer produces."""
    return json.dumps({"shape": [int(d) for d in shape], "dtype": str(np.dtype(dtype))})


# ----------------------------------------------------------------------------------- reading

def read_conf(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """Parse and validate the `.conf` of memfile `path`; FormatError names what is wrong."""
    conf = conf_path_for(path)
    raw = _read_conf_bytes(conf)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(conf, exc.start, "not UTF-8 text; a .conf is a small JSON object "
                          '{"shape": [...], "dtype": "..."}') from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        offset = len(text[:exc.pos].encode("utf-8"))
        raise FormatError(conf, offset, f"invalid JSON ({exc.msg}); rewrite it as "
                          '{"shape": [...], "dtype": "..."}') from None
    if not isinstance(doc, dict):
        raise FormatError(conf, 0, f"expected a JSON object, found {type(doc).__name__}")
    missing = [k for k in CONF_KEYS if k not in doc]
    unknown = sorted(set(doc) - set(CONF_KEYS))
    if missing or unknown:
        raise FormatError(conf, None, f"keys must be exactly {list(CONF_KEYS)}; missing "
                          f"{missing}, unknown {unknown} (an unknown key such as an order or "
                          "offset would change the meaning of the bytes, so it is refused)")
    return _parse_shape(conf, doc["shape"]), _parse_dtype(conf, doc["dtype"])


def _read_conf_bytes(conf: Path) -> bytes:
    try:
        with open(conf, "rb") as fh:
            raw = fh.read(MAX_CONF_BYTES + 1)
    except FileNotFoundError:
        raise FormatError(conf, None, "missing .conf beside the memfile (was its writer "
                          "interrupted?); rewrite the memfile") from None
    except OSError as exc:
        raise FormatError(conf, None, f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_CONF_BYTES:
        raise FormatError(conf, MAX_CONF_BYTES, f"larger than {MAX_CONF_BYTES} bytes; "
                          "not a memfile .conf")
    return raw


def _parse_shape(conf: Path, shape: object) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise FormatError(conf, None, f"shape {shape!r} must be a list of at most {MAX_NDIM} "
                          "non-negative integers")
    return tuple(shape)


def _parse_dtype(conf: Path, name: object) -> np.dtype:
    if not isinstance(name, str):
        raise FormatError(conf, None, f"dtype {name!r} must be a string such as \"float32\"")
    try:
        dtype = np.dtype(name)
    except (TypeError, ValueError, SyntaxError):
        raise FormatError(conf, None, f"unknown dtype {name!r}; use a numpy name such as "
                          "\"float32\" or \"uint8\"") from None
    if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise FormatError(conf, None, f"dtype {name!r} is not a plain numeric dtype "
                          "(bool, int, uint, float or complex)")
    return dtype


def open_memfile(path: str | os.PathLike, mode: str = "r") -> np.ndarray:
    """Open memfile `path` as an np.memmap (read-only by default) after validating its `.conf`.

    mode is 'r' (read-only), 'r+' (write through to the file) or 'c' (copy-on-write). A memfile
    holding zero bytes cannot be mapped and comes back as an empty read-only ndarray.
    """
    if mode not in READ_MODES:
        raise ValueError(f"mode {mode!r}: open_memfile takes one of {READ_MODES}; write new "
                         "memfiles with write_memfile or MemfileWriter")
    path = Path(path)
    shape, dtype = read_conf(path)
    expected = math.prod(shape) * dtype.itemsize
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        raise FormatError(path, None, "memfile data missing beside its .conf") from None
    if actual != expected:
        problem = (f"{actual} bytes, but .conf shape {list(shape)} x {dtype} itemsize "
                   f"{dtype.itemsize} needs {expected}")
        problem += "; truncated" if actual < expected else "; trailing bytes follow the array"
        raise FormatError(path, min(actual, expected), problem)
    if expected == 0:
        empty = np.zeros(shape, dtype)
        empty.flags.writeable = False
        return empty
    try:
        return np.memmap(path, mode=mode, dtype=dtype, shape=shape, order="C")
    except (OSError, ValueError) as exc:
        raise FormatError(path, None, f"cannot map: {exc}") from None


# ----------------------------------------------------------------------------------- writing

def reserve(fd: int, nbytes: int, path: Path) -> None:
    """Allocate `nbytes` of real disk blocks for `fd`; DatasetError if the disk cannot hold it."""
    if nbytes == 0:
        return
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, nbytes)
        else:  # no fallocate (macOS): writing zeros reserves the blocks just as well
            _write_zeros(fd, nbytes)
    except OSError as exc:
        reason = "no space left on device" if exc.errno == errno.ENOSPC else exc.strerror
        raise DatasetError(
            f"{path}: cannot reserve {nbytes} bytes for the memfile ({reason}); "
            f"{free_bytes(path.parent)} bytes free on that filesystem; free space or write "
            "elsewhere") from None


def _write_zeros(fd: int, nbytes: int, block: int = 1 << 20) -> None:
    zeros = bytes(min(block, nbytes))
    left = nbytes
    while left:
        left -= os.write(fd, zeros[:left])
    os.lseek(fd, 0, os.SEEK_SET)


class MemfileWriter(CommitOnExit):
    """Writes one memfile row by row: reserve, append chunks in order, then commit atomically.

    Use as a context manager: leaving the block normally commits (and fails if rows are
    missing), an exception discards the temporaries and leaves any old memfile untouched.
    """

    def __init__(self, path: str | os.PathLike, shape: Iterable[int], dtype: object):
        self.path = Path(path)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        if not self.shape or min(self.shape) < 0:
            raise ValueError(f"{self.path}: shape {self.shape} must have at least one "
                             "dimension and no negative sizes")
        if self.dtype.kind not in ALLOWED_KINDS or self.dtype.fields is not None:
            raise ValueError(f"{self.path}: dtype {self.dtype} is not a plain numeric dtype")
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        self.rows_written = 0
        self.info: MemfileInfo | None = None
        self._hash = hashlib.sha256()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_sibling(self.path)
        self._fh = open(self._tmp, "xb")
        try:
            reserve(self._fh.fileno(), self.nbytes, self.path)
        except BaseException:
            self.abort()
            raise

    def close(self) -> MemfileInfo:
        """CommitOnExit's name for commit(): leaving a `with` block cleanly commits."""
        return self.commit()

    def append(self, rows: np.ndarray) -> None:
        """Write the next len(rows) rows; rows must have shape (k, *shape[1:])."""
        rows = np.asarray(rows)
        if rows.shape[1:] != self.shape[1:] or rows.ndim != len(self.shape):
            row = ", ".join(map(str, self.shape[1:]))
            raise ValueError(f"{self.path}: rows of shape {rows.shape} do not fit a memfile of "
                             f"shape {self.shape}; expected (k, {row})")
        if self.rows_written + len(rows) > self.shape[0]:
            raise ValueError(f"{self.path}: {self.rows_written} + {len(rows)} rows exceed the "
                             f"declared {self.shape[0]}")
        try:
            data = np.ascontiguousarray(rows.astype(self.dtype, casting="same_kind", copy=False))
        except TypeError:
            raise ValueError(f"{self.path}: rows of dtype {rows.dtype} cannot be stored as "
                             f"{self.dtype} without an unsafe cast; convert them first") from None
        raw = data.reshape(-1).view(np.uint8)
        try:
            self._fh.write(raw)
        except OSError as exc:
            raise DatasetError(f"{self.path}: writing rows failed ({exc.strerror})") from None
        self._hash.update(raw)
        self.rows_written += len(rows)

    def commit(self) -> MemfileInfo:
        """Check every row was written, then put data and `.conf` in place (see module doc)."""
        if self.info is not None:
            return self.info
        if self.rows_written != self.shape[0]:
            self.abort()
            raise DatasetError(f"{self.path}: only {self.rows_written} of {self.shape[0]} rows "
                               "were written; nothing was committed")
        conf = conf_path_for(self.path)
        conf_tmp = temp_sibling(conf)
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            with open(conf_tmp, "x", encoding="utf-8") as fh:
                fh.write(conf_text(self.shape, self.dtype))
                fh.flush()
                os.fsync(fh.fileno())
            commit_with_sidecar(self._tmp, self.path, conf_tmp, conf)
        except OSError as exc:
            self.abort()
            with contextlib.suppress(FileNotFoundError):
                conf_tmp.unlink()
            raise DatasetError(f"{self.path}: committing the memfile failed ({exc})") from None
        self.info = MemfileInfo(self.path, conf, self.shape, str(self.dtype), self.nbytes,
                                self._hash.hexdigest())
        return self.info

    def abort(self) -> None:
        """Discard what was written; an existing memfile at `path` is left untouched."""
        if not self._fh.closed:
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


def write_memfile(path: str | os.PathLike, array: np.ndarray | None = None, *,
                  shape: Iterable[int] | None = None, dtype: object = None,
                  chunks: Iterable[np.ndarray] | None = None) -> MemfileInfo:
    """Write a memfile from a whole array, or from `chunks` of rows with a declared shape/dtype.

    write_memfile(p, arr) or write_memfile(p, shape=(n, 3, 112, 112), dtype="float32",
    chunks=iter_of_row_blocks). Chunks are appended in order and must add up to shape[0] rows.
    """
    if (array is None) == (chunks is None):
        raise ValueError("write_memfile takes either an array or shape, dtype and chunks")
    if array is not None:
        array = np.asarray(array)
        shape, dtype, chunks = array.shape, array.dtype, [array]
    if shape is None or dtype is None:
        raise ValueError("write_memfile with chunks needs shape and dtype")
    with MemfileWriter(path, shape, dtype) as writer:
        for chunk in chunks:
            writer.append(chunk)
        return writer.commit()
