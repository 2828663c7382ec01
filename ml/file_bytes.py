"""Reading whole files fast: the packers read tens of thousands of small image files.

`read_file_bytes(path)` returns a file's bytes through os.open / os.read / os.close, without the
FileIO + BufferedReader objects and the extra fstat and seek calls that `open(path, "rb").read()`
makes. For a 4 kB file in the page cache that is about 6 us instead of 11 (see
docs/benchmarks.md, packing). Short reads (network and FUSE file systems may return fewer bytes
than asked for) are handled by reading until the end of the file; a file of any size is read.
"""

from __future__ import annotations

import os

FIRST_READ_BYTES = 1 << 16       # one read returns a small image whole
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The whole content of the file at `path`. Raises OSError (FileNotFoundError,
    IsADirectoryError, PermissionError, ...) with the path, as open() does."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        data = os.read(fd, FIRST_READ_BYTES)
        if len(data) == FIRST_READ_BYTES:
            data = _reread_whole(fd, data)
        if not data:
            return data
        rest = _read_to_end(fd)
        return data if not rest else b"".join([data, *rest])
    except OSError as exc:                      # read() errors (a directory) carry no name
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise
    finally:
        os.close(fd)


def read_file_head(path: str | os.PathLike, limit: int) -> tuple[bytes, int]:
    """The first `limit` bytes of a file (fewer if it is shorter) and its size, in one open.
    Raises OSError as read_file_bytes does."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        return os.read(fd, limit), os.fstat(fd).st_size
    finally:
        os.close(fd)


def _reread_whole(fd: int, first: bytes) -> bytes:
    """A large file read again from the start into one buffer sized by fstat, which is faster
    than joining pieces; `first` as it is when the file cannot seek (a pipe)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        return first
    return os.read(fd, os.fstat(fd).st_size + 1)


def _read_to_end(fd: int) -> list[bytes]:
    """What is left before the end of the file: normally nothing, found by one empty read (a
    file that grew, or a file system that returns short reads, gives more pieces)."""
    pieces: list[bytes] = []
    while True:
        piece = os.read(fd, FIRST_READ_BYTES)
        if not piece:
            return pieces
        pieces.append(piece)
