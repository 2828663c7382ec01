"""Start method for process pools: fork when it is safe, forkserver otherwise.

fork starts workers instantly and shares the parent's imports, but forking a process in which
another thread holds a lock (a malloc arena, an OpenMP pool, a logging handler) leaves that lock
held forever in the child, which then hangs. Threads are counted by the operating system
(/proc/self/task), not by `threading`: native threads such as torch's intra-op pool or
jemalloc's background thread are invisible to `threading.active_count()` and were enough to
hang a face-generation pool after torch had run in the same process.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from multiprocessing.context import BaseContext

_TASKS = "/proc/self/task"


def thread_count() -> int:
    """Threads of this process, native ones included where the OS tells (Linux)."""
    try:
        return len(os.listdir(_TASKS))
    except OSError:
        return threading.active_count()


def pool_context(preload: Sequence[str] = ()) -> BaseContext:
    """fork for a single-threaded caller; forkserver (importing `preload` once in the server)
    when other threads run; spawn where neither exists. Workers must be module-level functions
    for the latter two."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and thread_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(preload))
        return context
    return multiprocessing.get_context("spawn")
