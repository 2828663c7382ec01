"""Arrow's memory pool for table work: memory a step frees goes back to the system at once.

Arrow's default allocator (mimalloc in the pyarrow wheels) keeps the pages a Parquet read frees
(decode buffers, the halves of grown string buffers), so a step that reads a million-row table
stays ~230 MB larger than the table for the rest of its run, and the numpy and pandas work that
follows stacks on top. jemalloc with a decay of 0 returns freed pages immediately: the splits
step at 1M samples peaks ~150-180 MB lower at the same speed (docs/benchmarks.md; mimalloc's
own MIMALLOC_PURGE_DELAY=0 saves more but runs the step 20-30% slower, and is read only before
pyarrow is first imported). Where the wheel has no jemalloc, the default pool stays.
"""

from __future__ import annotations

import logging

import pyarrow as pa

log = logging.getLogger(__name__)


def return_freed_memory() -> bool:
    """Make jemalloc, decaying at once, Arrow's default pool; False where it is not built in."""
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:            # (ArrowNotImplementedError is one)
        log.debug("pyarrow has no jemalloc here; Arrow keeps its default memory pool")
        return False
    pa.set_memory_pool(pool)
    return True
