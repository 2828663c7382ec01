"""stat_files: size and mtime of many files as columns, in this thread, on threads (slow
storage) or spread over processes (many files), with the same answer every way."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pyarrow as pa
import pytest

import ml.file_stats as file_stats
from ml.file_stats import NO_MTIME, stat_files


@pytest.mark.parametrize("how", ["thread", "threads", "processes"])
def test_every_way_gives_each_file_its_size_and_mtime(tmp_path, monkeypatch, how):
    paths = []
    for i in range(60):
        path = tmp_path / f"d{i % 4}" / f"{i}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * i)
        paths.append(str(path))
    paths[7] = str(tmp_path / "gone.bin")                     # never existed
    monkeypatch.setattr(file_stats, "STAT_CHUNK", 8)
    monkeypatch.setattr(file_stats, "PROCESS_CHUNK", 5)
    monkeypatch.setattr(file_stats, "PROCESSES_FROM", 10 if how == "processes" else 10**9)
    monkeypatch.setattr(file_stats.os, "cpu_count", lambda: 2)
    if how == "threads":
        monkeypatch.setattr(file_stats, "SLOW_STAT_S", -1.0)
    sizes, mtimes = stat_files(pa.array(paths))
    expected = [os.stat(p).st_size if i != 7 else -1 for i, p in enumerate(paths)]
    assert sizes.tolist() == expected
    assert mtimes[7] == NO_MTIME
    assert all(mtimes[i] == os.stat(p).st_mtime_ns for i, p in enumerate(paths) if i != 7)
    assert stat_files(paths)[0].tolist() == expected           # a list of str the same
    assert isinstance(sizes, np.ndarray) and sizes.dtype == np.int64


def test_a_dead_stat_worker_means_stating_in_this_process(tmp_path, monkeypatch):
    paths = [str(tmp_path / f"{i}.bin") for i in range(30)]
    for i, p in enumerate(paths):
        open(p, "wb").write(b"y" * i)

    def killed(*args):
        raise BrokenProcessPool("a worker was killed")
    monkeypatch.setattr(file_stats, "_stat_in_processes", killed)
    monkeypatch.setattr(file_stats, "STAT_CHUNK", 4)
    monkeypatch.setattr(file_stats, "PROCESSES_FROM", 10)
    monkeypatch.setattr(file_stats.os, "cpu_count", lambda: 2)
    assert stat_files(paths)[0].tolist() == list(range(30))
