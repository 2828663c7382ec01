"""Arrow memory a step frees goes back to the system: a million-row table read and dropped must
not leave the step hundreds of megabytes larger for the rest of its run."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ml.arrow_memory import return_freed_memory


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def test_freed_arrow_memory_is_returned_at_once():
    if not return_freed_memory():
        pytest.skip("this pyarrow has no jemalloc")
    assert pa.default_memory_pool().backend_name == "jemalloc"
    before = _rss()
    # many mid-sized buffers, as a Parquet decode makes them: 256 MB in all
    parts = [pc.add(pa.array(np.arange(1 << 17, dtype=np.int64)), 1) for _ in range(256)]
    grown = _rss() - before
    del parts
    kept = _rss() - before
    assert grown > 200 * 2 ** 20
    # Arrow's default (mimalloc) keeps all of it; jemalloc decaying at once returns most
    assert kept < grown / 2, f"{kept / 2**20:.0f} MB still held after freeing {grown / 2**20:.0f} MB"
