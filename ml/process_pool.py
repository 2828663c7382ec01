"""Start method for process pools: fork when it is safe, forkserver otherwise.

fork starts workers instantly and shares the parent's imports, but forking a process in which
another thread holds a lock (a malloc arena, an OpenMP pool, a logging handler) leaves that lock
held forever in the child, which then hangs. Threads are counted by the operating system
(/proc/self/task), not by `threading`: native threads such as torch's intra-op pool or
jemalloc's background thread are invisible to `threading.active_count()` and were enough to
hang a face-generation pool after torch had run in the same process.

A forkserver or spawn worker normally re-imports the parent's `__main__` before its first task
(to unpickle functions defined there). Under Dagster `__main__` is Dagster's CLI, so every
worker of every pool imported Dagster first: ~3.5 s per pool on 2 cores, a worker's first
result after 3.8 s against 0.2 s with a light main. Our workers are module-level functions of
ml/, so the forkserver workers made here skip that import when `__main__` is an installed
program (`_LeanForkServerContext`).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from multiprocessing import context as mp_context
from multiprocessing import popen_forkserver, spawn
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

Tag = TypeVar("Tag")

_TASKS = "/proc/self/task"


def thread_count() -> int:
    """Threads of this process, native ones included where the OS tells (Linux)."""
    try:
        return len(os.listdir(_TASKS))
    except OSError:
        return threading.active_count()


_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")
_lean = threading.local()            # set while one of our workers is being started
_preparation_data = spawn.get_preparation_data


def main_is_an_installed_tool() -> bool:
    """Whether `__main__` is an installed program (Dagster's CLI, pytest: a file in
    site-packages or a venv's bin/), which never holds our workers' functions. A script of the
    project (bench/*.py, `python -m demo.sample_data`) may, and its workers still import it."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if path is None:
        return False
    path = os.path.realpath(path)
    if {"site-packages", "dist-packages"} & set(path.split(os.sep)):
        return True
    return any(path.startswith(os.path.join(os.path.realpath(prefix), "bin") + os.sep)
               for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix})


def _without_main(name: str) -> dict:
    """multiprocessing's preparation data for a new process, less the parent's `__main__`
    when one of our lean workers is being started (on this thread) and that main is an
    installed program; unchanged otherwise."""
    data = _preparation_data(name)
    if getattr(_lean, "starting", False) and main_is_an_installed_tool():
        for key in _MAIN_KEYS:
            data.pop(key, None)
    return data


spawn.get_preparation_data = _without_main      # other callers see the original data


class _LeanPopen(popen_forkserver.Popen):
    def _launch(self, process_obj) -> None:
        _lean.starting = True
        try:
            super()._launch(process_obj)
        finally:
            _lean.starting = False


class _LeanProcess(mp_context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        return _LeanPopen(process_obj)


class _LeanForkServerContext(mp_context.ForkServerContext):
    """forkserver whose workers do not import the parent's `__main__`."""

    Process = _LeanProcess


def pool_context(preload: Sequence[str] = ()) -> BaseContext:
    """fork for a single-threaded caller; forkserver (importing `preload` once in the server)
    when other threads run; spawn where neither exists. Workers must be module-level functions
    for the latter two."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and thread_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = _LeanForkServerContext()
        context.set_forkserver_preload(list(preload))
        return context
    return multiprocessing.get_context("spawn")


def in_flight(pool: Executor, calls: Iterable[tuple[Tag, Callable, tuple]],
              limit: int) -> Iterator[tuple[Tag, Future]]:
    """Submit `calls` (tag, function, arguments) to `pool`, at most `limit` running at once,
    and yield (tag, future) as each one finishes. Calls are made as workers take them (a lazy
    iterable is never drawn ahead), so a million rows cost `limit` tasks of memory."""
    calls = iter(calls)
    pending: dict[Future, Any] = {}
    while True:
        for tag, function, args in itertools.islice(calls, limit - len(pending)):
            pending[pool.submit(function, *args)] = tag
        if not pending:
            return
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            yield pending.pop(future), future
