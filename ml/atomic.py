"""Atomic artifact writes: write to a temporary sibling, fsync, then rename into place.

A crash never leaves a half-written artifact where a good one was: readers see either the old
file or the new one. Temporary siblings are named `.<name>.tmp-<host>-<pid>-<random>` in the
same folder so the final rename never crosses a filesystem, and so that a later run can tell
the leftovers of a killed process (same host, process gone) from a live run's and remove them
(`remove_stale_temps`). Folders of several files (a packed format's shards and indexes) are
published whole by `publish_dir` (ml/publish.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import BinaryIO, Iterator


HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?:(?P<host>[0-9a-f]{6})-)?(?P<pid>\d+)-[0-9a-f]{8}$")


def temp_sibling(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}")


def final_of(path: str | os.PathLike) -> Path:
    """The file a temporary sibling will become (the path itself when it is not one): what an
    error message should name."""
    path = Path(path)
    match = _TEMP_NAME.match(path.name)
    return path.with_name(match["name"]) if match else path


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(match: re.Match) -> bool:
    """A temporary of this host whose process is gone (another host's is never judged)."""
    return match["host"] in (None, HOST_TAG) and not _process_alive(int(match["pid"]))


def _remove_entry(entry: os.DirEntry) -> None:
    if entry.is_dir(follow_symlinks=False):
        shutil.rmtree(entry.path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of `path` left by killed processes of this host.

    Only `.<name>.tmp-*` entries of this very `path` are considered, and only those whose
    process (same host tag, pid no longer running) is gone: a live run's temporaries, and
    those of runs on other hosts sharing the folder, are left alone. Returns what was removed.
    """
    path = Path(path)
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match and match["name"] == path.name and _stale(match):
            _remove_entry(entry)
            removed.append(Path(entry.path))
    return removed


RUNS_MARKED = "runs-leave-markers"   # in a bookkeeping folder: its runs mark themselves


@contextlib.contextmanager
def run_leaving_no_temps(folder: str | os.PathLike, marks: str | os.PathLike) -> Iterator[None]:
    """A run that writes temporaries anywhere below `folder` (an asset's output folder). While
    it runs, a marker named like a temporary of its process lies in `marks` (the run's own
    bookkeeping folder), and it is removed when the run ends well. A run that finds another's
    marker there (a killed run, whose marker is stale like its temporaries, or a live one)
    removes the stale temporaries below `folder` (`remove_stale_temps_under`, one walk of the
    tree); a run that finds none spares itself that walk over a million files (0.6 s). A run
    that ends well leaves the folders as it found them. Until `marks` holds RUNS_MARKED (put
    there by the first such run), runs are not known to leave markers and every run walks."""
    marks = Path(marks)
    marks.mkdir(parents=True, exist_ok=True)
    names = os.listdir(marks)
    if RUNS_MARKED not in names or any(_TEMP_NAME.match(name) for name in names):
        remove_stale_temps_under(folder)
    mark = temp_sibling(marks / "run")
    mark.touch()
    if RUNS_MARKED not in names:
        (marks / RUNS_MARKED).touch()
    fsync_dir(marks)                       # durable before this run writes any temporary
    yield                                  # an exception leaves the mark: the next run walks
    mark.unlink(missing_ok=True)           # (gone with an unreadable manifest's folder)


def remove_stale_temps_under(folder: str | os.PathLike) -> int:
    """Remove every stale temporary (as `remove_stale_temps` judges them) anywhere below
    `folder`, an asset's own output folder (resized images); one listing of the tree. Returns
    how many were removed."""
    removed, stack = 0, [os.fspath(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            match = _TEMP_NAME.match(entry.name) if ".tmp-" in entry.name else None
            if match is not None:
                if _stale(match):
                    _remove_entry(entry)
                    removed += 1
            elif entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path to write `path` through; rename it into place on success.

    For writers that want a filename (h5py, np.memmap, PIL.save). On any exception the
    temporary file is removed and the previous artifact, if any, is left untouched. `tmp`: a
    `temp_sibling(path)` already written (by a thread that began early), published or removed
    here like one written inside the block.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final) if tmp is None else tmp
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary sibling for writing; on success flush, fsync and rename into place."""
    if "r" in mode or "a" in mode:
        raise ValueError(f"atomic_open writes whole files; mode {mode!r} is not supported")
    with atomic_path(path) as tmp:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a whole folder in a temporary sibling, then swap it into place.

    The old folder (if any) is renamed aside first and removed only after the new one is in
    place, so at every moment `path` is either the complete old folder or the complete new one
    (apart from the instant between the two renames). For the sample data's source folders;
    artifacts are published with `ml.publish.publish_dir`, which has no such instant.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = temp_sibling(final)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def commit_with_sidecar(data_tmp: Path, data: Path, sidecar_tmp: Path | None,
                        sidecar: Path | None) -> None:
    """Put a data file and its sidecar (an index, a memfile's .conf), both written and fsynced
    as temporary siblings, in place together. The old pair is moved aside first (to temporary
    siblings), the new pair renamed in, then the old one removed and the folder fsynced. A
    failed rename puts the old pair back whole; a crash of the process in between leaves the
    data without a sidecar (readers refuse it) or no data (the old pair lies aside, as
    temporaries that remove_stale_temps clears), never a sidecar that describes other data."""
    moves = [(data_tmp, data)]
    if sidecar_tmp is not None and sidecar is not None:
        moves.append((sidecar_tmp, sidecar))
    asides: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for _, final in reversed(moves):              # the sidecar first: never a lone old one
            if os.path.lexists(final):
                aside = temp_sibling(final)
                os.replace(final, aside)
                asides.append((aside, final))
        for tmp, final in moves:
            os.replace(tmp, final)
            placed.append(final)
    except BaseException:
        for final in placed:
            final.unlink(missing_ok=True)
        for aside, final in reversed(asides):
            os.replace(aside, final)
        raise
    for aside, _ in asides:
        aside.unlink(missing_ok=True)
    fsync_dir(data.parent)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside `folder` durable (the directory entry itself is fsynced)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(folder: str | os.PathLike) -> None:
    """Flush every file written to the filesystem that holds `folder` (syncfs(2), one call
    instead of an fsync per file; os.sync() where syncfs is unavailable)."""
    syncfs = getattr(_libc(), "syncfs", None)
    fd = os.open(folder, os.O_RDONLY)
    try:
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


SYNC_FILE_RANGE_WRITE = 2     # <linux/fs.h>: start the writeback of dirty pages, do not wait


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Ask the kernel to start writing `length` bytes at `offset` of `fd` to disk, without
    waiting for them (sync_file_range(2)); False where it cannot be asked (not Linux) or it
    refused. A hint only: the file's fsync still decides what is durable and reports errors."""
    call = getattr(_libc(), "sync_file_range", None)
    return call is not None and call(fd, ctypes.c_int64(offset), ctypes.c_int64(length),
                                     ctypes.c_uint(SYNC_FILE_RANGE_WRITE)) == 0


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


class CommitOnExit:
    """Context-manager behaviour of a writer: `close()` on success, `abort()` on an error."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
