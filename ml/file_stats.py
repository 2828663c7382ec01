"""Size and mtime of many files at once, as columns.

A stat of a cached inode takes 1-3 us here, and threads only contend for the GIL around it
(2.2 s against 1.0 s for 366,858 files on this machine), so stats run in the calling thread;
when the first chunk shows them waiting on storage (a network filesystem, a cold disk), the
rest go to a few threads in chunks (a future per file would cost ten times a local stat).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

NO_MTIME = np.iinfo(np.int64).min   # an mtime column's "none" (a container member, a gone file)
STAT_CHUNK = 4096                   # paths per task when stats go to threads
STAT_THREADS = 8                    # a slow stat waits on storage, not on the CPU
SLOW_STAT_S = 20e-6                 # slower than this per file means waiting: use threads


def _stat_chunk(paths: Sequence[str]) -> tuple[list[int], list[int]]:
    sizes, mtimes = [], []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:              # gone, or unreadable: the caller says which matters
            sizes.append(-1)
            mtimes.append(NO_MTIME)
            continue
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
    return sizes, mtimes


def stat_files(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(size, mtime_ns) of every path as int64 columns; size -1 and NO_MTIME where a path
    cannot be stat'ed."""
    start = time.perf_counter()
    sizes, mtimes = _stat_chunk(paths[:STAT_CHUNK])
    rest = paths[STAT_CHUNK:]
    per_file = (time.perf_counter() - start) / max(1, min(len(paths), STAT_CHUNK))
    if len(rest) and per_file <= SLOW_STAT_S:
        more_sizes, more_mtimes = _stat_chunk(rest)
        sizes += more_sizes
        mtimes += more_mtimes
    elif len(rest):
        with ThreadPoolExecutor(STAT_THREADS) as pool:
            chunks = [rest[i:i + STAT_CHUNK] for i in range(0, len(rest), STAT_CHUNK)]
            for part_sizes, part_mtimes in pool.map(_stat_chunk, chunks):
                sizes += part_sizes
                mtimes += part_mtimes
    return np.asarray(sizes, np.int64), np.asarray(mtimes, np.int64)
