"""Image headers of many files, read across cores: status, reason, width, height and bytes.

What the catalog knows of each plain file without decoding pixels. A plain JPEG (no EXIF block,
YCbCr or grayscale; most large datasets) is sized from its first 64 KiB by simplejpeg, about
7 us a file; every other file (PNG, an EXIF orientation, CMYK, a damaged header) goes through
ml.imageio.read_header (Pillow, ~35 us), which also says what is wrong with a bad one.

Large lists are split into chunks read by a process pool, one process per core (Pillow's
header parsing holds the GIL, so threads would not help); each chunk's results come back as one
list, so the per-file cost of the pool is a few bytes of pickling, not a future per file; the
results land in columns (HeaderColumns), never one tuple per file for the whole dataset.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ml.errors import ImageError
from ml.file_bytes import read_file_head
from ml.imageio import EXIF_SEARCH_BYTES, MISSING, plain_jpeg_size, read_header
from ml.process_pool import in_flight, pool_context
from ml.progress import Progress
from ml.sample_status import CORRUPT, MISSING as MISSING_STATUS, OK

Header = tuple[str, str, "int | None", "int | None", "int | None"]   # status, reason, w, h, bytes

CHUNK = 2048                 # files per task handed to a worker
PARALLEL_FROM = 20_000       # fewer files are read in this process (a pool costs ~0.1 s to start)


def file_header(path: str) -> Header:
    """('ok', '', width, height, bytes), or ('missing' | 'corrupt', reason, None, None,
    bytes or None). EXIF orientation is applied to the size."""
    try:
        head, size = read_file_head(path, EXIF_SEARCH_BYTES)
    except FileNotFoundError:
        return MISSING_STATUS, "no such file", None, None, None
    except OSError:                     # a folder named like an image, an I/O error
        return _pillow_header(path)
    wh = plain_jpeg_size(head)
    if wh is not None:
        return OK, "", wh[0], wh[1], size
    return _pillow_header(path)


def status_of(error: ImageError) -> str:
    """The status of an image that cannot be read: 'missing' or 'corrupt'."""
    return MISSING_STATUS if error.reason == MISSING else CORRUPT


def _pillow_header(path: str) -> Header:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return MISSING_STATUS, "no such file", None, None, None
    except OSError:
        size = None
    try:
        h = read_header(path)
        return OK, "", h.width, h.height, size
    except ImageError as exc:
        return status_of(exc), exc.reason, None, None, size


def headers_of(paths: Sequence[str]) -> list[Header]:
    """Headers of `paths`, in order, in this process (a pool worker's task)."""
    return [file_header(p) for p in paths]


@dataclass
class HeaderColumns:
    """Headers of many files as columns: status and reason (text), width, height and bytes
    (int64, -1 where unknown). A million headers as tuples were ~180 MB of Python objects."""

    status: np.ndarray
    reason: np.ndarray
    width: np.ndarray
    height: np.ndarray
    size: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "HeaderColumns":
        return cls(np.full(n, OK, dtype=object), np.full(n, "", dtype=object),
                   *(np.full(n, -1, np.int64) for _ in range(3)))

    def fill(self, start: int, headers: list[Header]) -> None:
        """Put a chunk's headers at rows start.. (None as -1)."""
        if not headers:
            return
        stop = start + len(headers)
        status, reason, width, height, size = zip(*headers)
        self.status[start:stop], self.reason[start:stop] = status, reason
        for column, values in ((self.width, width), (self.height, height), (self.size, size)):
            column[start:stop] = [-1 if v is None else v for v in values]

    def __len__(self) -> int:
        return len(self.status)


def read_headers(paths: Sequence[str] | pa.Array, *, workers: int | None = None,
                 progress: Progress | None = None) -> HeaderColumns:
    """Headers of `paths`, in order: in this process for a short list or one worker, else in
    a pool of `workers` processes (default: one per core), a bounded number of chunks in
    flight (an Arrow column becomes Python text a chunk at a time). `progress` advances per
    chunk."""
    workers = workers or os.cpu_count() or 1
    out = HeaderColumns.empty(len(paths))
    starts = range(0, len(paths), CHUNK)

    def chunk(start: int) -> list[str]:
        part = paths[start:start + CHUNK]
        return part.to_pylist() if isinstance(part, (pa.Array, pa.ChunkedArray)) else list(part)

    if workers == 1 or len(paths) < PARALLEL_FROM:
        for start in starts:
            found = headers_of(chunk(start))
            out.fill(start, found)
            if progress is not None:
                progress.advance(len(found))
        return out
    calls = ((start, headers_of, (chunk(start),)) for start in starts)
    with ProcessPoolExecutor(max_workers=workers,
                             mp_context=pool_context(["ml.headers"])) as pool:
        for start, future in in_flight(pool, calls, 4 * workers):
            found = future.result()
            out.fill(start, found)
            if progress is not None:
                progress.advance(len(found))
    return out
