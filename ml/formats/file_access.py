"""Descriptor-level file access shared by the packed formats' readers and writers.

- `PreadFile`: a file read with pread through a descriptor opened lazily, once per process (a
  forked DataLoader worker opens its own; pickling for spawn workers carries only the path and
  the file's identity). Every (re)open checks that the file is still the one that was indexed
  (device, inode, size, mtime), so stale offsets are never read from a replaced file. pread on
  one descriptor is safe from several threads.
- `OutputFile`: a new file written from lists of buffers (no copy of `bytes`, short writes
  finished). One helper thread makes the writev calls, computes the optional sha256 (hashlib
  releases the GIL on large buffers) and runs other background jobs in order, such as the
  sealed file's fsync, so they overlap the caller's next work; close() waits for them and
  re-raises their errors. The caller is never held by the disk: once a file's dirty pages
  pass what the kernel lets a device hold (~300 MB on this project's VM), each write waits
  for the disk (1 MB took 3-4 ms), which made packing 1M images spend 2 s of its main thread
  in writev (0.03 s at 100k); on the helper those waits overlap the reading and framing.
  Up to QUEUED_BYTES of buffers wait for it. Every WRITEBACK_BYTES written, the helper also
  asks the kernel to start writing them to disk (`start_writeback`, Linux's
  sync_file_range), so the closing fsync waits only for the last stretch (a 1.1 GB .rec
  fsynced whole waited 0.4 s).
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ml.atomic import final_of, start_writeback
from ml.errors import DatasetError, FormatError

GATHER_ROWS = 65_536                 # offsets gathered at a time (their index: 64k x count x 8 B)
MAP_WINDOW = 32 * 2 ** 20            # bytes of a file mapped at a time by PreadFile.gather
HELPER_QUEUE_DEPTH = 64              # jobs (writes, hashes, fsyncs) waiting for the helper
QUEUED_BYTES = 32 * 2 ** 20          # bytes of buffers waiting to be written at most
WRITEBACK_BYTES = 16 * 2 ** 20      # bytes written between two starts of their writeback
IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if hasattr(os, "sysconf") else 16

FileIdentity = tuple[int, int, int, int]


def file_identity(stat: os.stat_result) -> FileIdentity:
    """(device, inode, size, mtime_ns): what tells a file from one replaced or changed since."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


# ------------------------------------------------------------------------------------ reading

class PreadFile:
    """Random reads of one file through a descriptor opened once per process.

    `identity` is the file's identity when it was indexed (None: whatever the first open
    finds); `what` names the file in errors ("RecordIO file", "HDF5 store").
    """

    def __init__(self, path: str | os.PathLike, what: str = "file",
                 identity: FileIdentity | None = None):
        self.path = Path(path)
        self.what = what
        self.identity = identity
        self._fd: int | None = None
        self._pid: int | None = None
        self._size = 0

    def __getstate__(self) -> dict:
        return {"path": self.path, "what": self.what, "identity": self.identity}

    def __setstate__(self, state: dict) -> None:
        PreadFile.__init__(self, state["path"], state["what"], state["identity"])  # no reopen yet

    def descriptor(self) -> int:
        """This process's descriptor, opened (and checked) on first use."""
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            try:
                fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise FormatError(self.path, None, f"cannot open {self.what} ({exc.strerror}); "
                                                   "check the path") from exc
            stat = os.fstat(fd)
            identity = file_identity(stat)
            if self.identity not in (None, identity):
                os.close(fd)
                raise FormatError(self.path, None, f"the {self.what} was replaced or changed "
                                                   "after it was indexed; open it again")
            self._fd, self._pid, self._size, self.identity = fd, pid, stat.st_size, identity
        return self._fd

    @property
    def size(self) -> int:
        """The file's size in bytes when this process opened it."""
        self.descriptor()
        return self._size

    def pread(self, count: int, offset: int) -> bytes:
        """Exactly `count` bytes at `offset` (callers check the bounds first)."""
        data = os.pread(self.descriptor(), count, offset)
        if len(data) != count:
            raise self._ended_early(offset, count, len(data))
        return data

    def gather(self, offsets: np.ndarray, count: int) -> np.ndarray:
        """`count` bytes at each of many offsets as rows of a uint8 array, zeros past the end
        of the file: a record header each of a million records in a quarter of the time of a
        pread each. The offsets are taken in file order through read-only memory maps of at
        most MAP_WINDOW bytes (and GATHER_ROWS offsets) each, unmapped as soon as read: the
        pages touched count in the process's RSS only while their window is mapped (one map
        of a 3.7 GB file left 3.9 GB resident)."""
        offsets = np.asarray(offsets, dtype=np.int64)
        rows = np.zeros((len(offsets), count), np.uint8)
        size = self.size
        if not len(offsets) or not size or not count:
            return rows
        order = np.argsort(offsets, kind="stable")
        ordered = offsets[order]
        columns = np.arange(count, dtype=np.int64)
        start, end = np.searchsorted(ordered, [0, size])     # the rest lie outside: zeros
        while start < end:
            low = int(ordered[start]) // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
            stop = int(min(end, start + GATHER_ROWS,
                           max(start + 1, np.searchsorted(ordered, low + MAP_WINDOW - count))))
            high = min(size, int(ordered[stop - 1]) + count)
            with mmap.mmap(self.descriptor(), high - low, offset=low,
                           access=mmap.ACCESS_READ) as mapped:
                data = np.frombuffer(mapped, np.uint8)
                try:
                    at = ordered[start:stop, None] - low + columns
                    rows[order[start:stop]] = np.where(at < high - low,
                                                       data[np.minimum(at, high - low - 1)], 0)
                finally:
                    del data                # a map closes only when no array views it
            start = stop
        return rows

    def pread_array(self, count: int, offset: int) -> np.ndarray:
        """Exactly `count` bytes at `offset`, read straight into a new writable uint8 array."""
        data = np.empty(count, np.uint8)
        got = os.preadv(self.descriptor(), [data], offset)
        if got != count:
            raise self._ended_early(offset, count, got)
        return data

    def _ended_early(self, offset: int, count: int, got: int) -> FormatError:
        return FormatError(self.path, offset + got, f"file ended early (it shrank to fewer than "
                                                    f"{offset + count} bytes while being read)")

    def close(self) -> None:
        """Close the descriptor if this process opened it."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = None


# ------------------------------------------------------------------------------------ writing

def free_bytes(folder: str | os.PathLike) -> int:
    """Free space (bytes) of the filesystem holding `folder`, or -1 if it cannot be read."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


def write_error(path: str | os.PathLike, exc: OSError, doing: str) -> DatasetError:
    """A failed write as one clear sentence: the file, what failed, the free space left."""
    path = final_of(path)
    reason = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return DatasetError(f"{path}: {doing} failed ({reason}); {free_bytes(path.parent)} bytes free "
                        "on that filesystem; free space, or write the outputs elsewhere "
                        "(storage_root or output_dir), and run again")


def write_buffers(fd: int, buffers: Sequence[bytes]) -> None:
    """Write every buffer in order with writev, finishing any short write."""
    for start in range(0, len(buffers), IOV_MAX):
        batch = buffers[start:start + IOV_MAX]
        written = os.writev(fd, batch)
        total = sum(map(len, batch))
        if written < total:
            rest = memoryview(b"".join(batch))[written:]
            while rest:
                rest = rest[os.write(fd, rest):]


def hash_buffers(hasher: Any, buffers: Sequence[bytes]) -> None:
    for buffer in buffers:
        hasher.update(buffer)


class OutputFile:
    """A new file (created exclusively) written from buffers, with an optional sha256 and
    background jobs on one helper thread; see the module docstring."""

    def __init__(self, path: str | os.PathLike, sha256: bool):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self.path = Path(path)
        try:
            self.fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise write_error(path, exc, "creating the file") from None
        self.bytes = 0
        self._writeback_from = 0              # where the bytes not yet sent to disk begin
        self.sha = hashlib.sha256() if sha256 else None
        self._helper = ThreadPoolExecutor(1, thread_name_prefix="file-io")
        self._jobs: deque[tuple[Future, int]] = deque()     # (job, bytes it holds)
        self._queued_bytes = 0
        self._sealed = False
        self._closed = False

    @property
    def sha256(self) -> str | None:
        """The hex sha256 of everything written (None without sha256); complete after close()."""
        return self.sha.hexdigest() if self.sha is not None else None

    def write(self, buffers: Sequence[bytes]) -> None:
        """Append `buffers` in order, written on the helper thread: `bytes` are taken as they
        are (nothing changes them), any other buffer is copied, so the caller may reuse its
        own at once. A failed write is raised by a later call, or by close()."""
        owned = [b if type(b) is bytes else bytes(b) for b in buffers]
        size = sum(map(len, owned))
        offset, self.bytes = self.bytes, self.bytes + size
        self._queue(self._write_at, (owned, offset), size)
        if self.sha is not None:
            self._queue(hash_buffers, (self.sha, owned), 0)     # the same buffers, held once
        if self.bytes - self._writeback_from >= WRITEBACK_BYTES:
            self.in_background(start_writeback, self.fd, self._writeback_from,
                               self.bytes - self._writeback_from)
            self._writeback_from = self.bytes

    def _write_at(self, buffers: list[bytes], offset: int) -> None:
        try:
            write_buffers(self.fd, buffers)
        except OSError as exc:
            raise write_error(self.path, exc, f"writing after {offset} bytes") from None

    def in_background(self, job: Callable, *args) -> None:
        """Run `job(*args)` on the helper thread, after the work already queued; close()
        waits for it and re-raises its error."""
        self._queue(job, args, 0)

    def _queue(self, job: Callable, args: tuple, size: int) -> None:
        """Queue a job holding `size` bytes of buffers, first waiting (and re-raising errors)
        while too many jobs or bytes wait."""
        while self._jobs and (len(self._jobs) >= HELPER_QUEUE_DEPTH
                              or self._queued_bytes + size > QUEUED_BYTES):
            done, held = self._jobs.popleft()
            self._queued_bytes -= held
            done.result()
        self._jobs.append((self._helper.submit(job, *args), size))
        self._queued_bytes += size

    def seal(self) -> None:
        """No more writes: the helper finishes hashing and fsyncs in the background."""
        if not self._sealed:
            self._sealed = True
            self.in_background(os.fsync, self.fd)

    def close(self) -> None:
        """Seal, wait until everything is hashed and fsynced, close; re-raise errors."""
        try:
            self.seal()
            while self._jobs:
                self._jobs.popleft()[0].result()
        except OSError as exc:       # fsync (or a background write) ran out of space
            raise write_error(self.path, exc, f"finishing the file ({self.bytes} bytes)") from None
        finally:
            self._release(cancel=False)

    def abandon(self) -> None:
        """Drop pending work and close the file, whatever state the data is in."""
        self._release(cancel=True)

    def _release(self, cancel: bool) -> None:
        if not self._closed:
            self._closed = True
            self._helper.shutdown(wait=True, cancel_futures=cancel)
            self._jobs.clear()
            os.close(self.fd)
