"""Size and mtime of many files at once, as columns.

A stat of a cached inode takes 2-3 us here, and threads only contend for the GIL around it
(2.2 s against 1.0 s for 366,858 files on this machine), so a few stats run in the calling
thread and many are spread over processes, a chunk of paths each (1M stats: 2.7 s in one
process; the cores share them). When the first chunk shows stats waiting on storage (a network
filesystem, a cold disk), the rest go to a few threads in chunks instead: waiting needs no core
(a future per file would cost ten times a local stat).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Sequence

import numpy as np
import pyarrow as pa

from ml.process_pool import in_flight, pool_context

NO_MTIME = np.iinfo(np.int64).min   # an mtime column's "none" (a container member, a gone file)
STAT_CHUNK = 4096                   # paths per task when stats go to threads
STAT_THREADS = 8                    # a slow stat waits on storage, not on the CPU
SLOW_STAT_S = 20e-6                 # slower than this per file means waiting: use threads
PROCESSES_FROM = 200_000            # this many fast stats or more are spread over processes
PROCESS_CHUNK = 65_536              # paths per process task
MAX_PROCESSES = 8
log = logging.getLogger(__name__)


def _stat_chunk(paths: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray) -> None:
    """Fill `sizes` and `mtimes` (views of the result columns) for `paths`."""
    for i, path in enumerate(paths):
        try:
            st = os.stat(path)
        except OSError:              # gone, or unreadable: the caller says which matters
            sizes[i], mtimes[i] = -1, NO_MTIME
            continue
        sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns


def _stat_list(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A process task: the stats of a chunk of paths."""
    sizes, mtimes = np.empty(len(paths), np.int64), np.empty(len(paths), np.int64)
    _stat_chunk(paths, sizes, mtimes)
    return sizes, mtimes


def _text(paths, start: int, stop: int) -> Sequence[str]:
    part = paths[start:stop]
    return part.to_pylist() if isinstance(part, (pa.Array, pa.ChunkedArray)) else part


def stat_files(paths: Sequence[str] | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(size, mtime_ns) of every path as int64 columns; size -1 and NO_MTIME where a path
    cannot be stat'ed. An Arrow column is turned into Python text one chunk at a time."""
    n = len(paths)
    sizes, mtimes = np.empty(n, np.int64), np.empty(n, np.int64)

    def chunk(start: int, size: int = STAT_CHUNK) -> None:
        _stat_chunk(_text(paths, start, start + size), sizes[start:start + size],
                    mtimes[start:start + size])

    started = time.perf_counter()
    chunk(0)
    per_file = (time.perf_counter() - started) / max(1, min(n, STAT_CHUNK))
    processes = min(os.cpu_count() or 1, MAX_PROCESSES)
    if per_file > SLOW_STAT_S and n > STAT_CHUNK:
        with ThreadPoolExecutor(STAT_THREADS) as pool:
            list(pool.map(chunk, range(STAT_CHUNK, n, STAT_CHUNK)))
    elif n - STAT_CHUNK >= PROCESSES_FROM and processes > 1:
        try:
            _stat_in_processes(paths, sizes, mtimes, processes)
        except BrokenProcessPool:             # a worker killed (out of memory): no pool then
            log.warning("stat worker process died; stating %d files in this process", n)
            for start in range(STAT_CHUNK, n, STAT_CHUNK):
                chunk(start)
    else:
        for start in range(STAT_CHUNK, n, STAT_CHUNK):
            chunk(start)
    return sizes, mtimes


def _stat_in_processes(paths, sizes: np.ndarray, mtimes: np.ndarray, processes: int) -> None:
    """Rows STAT_CHUNK.. of the result columns, a PROCESS_CHUNK of paths per process task,
    two tasks per process in flight (bounded memory)."""
    n = len(paths)
    calls = ((start, _stat_list, (list(_text(paths, start, start + PROCESS_CHUNK)),))
             for start in range(STAT_CHUNK, n, PROCESS_CHUNK))
    with ProcessPoolExecutor(processes, mp_context=pool_context(["ml.file_stats"])) as pool:
        for start, future in in_flight(pool, calls, 2 * processes):   # bounded memory
            part_sizes, part_mtimes = future.result()
            sizes[start:start + len(part_sizes)] = part_sizes
            mtimes[start:start + len(part_mtimes)] = part_mtimes
