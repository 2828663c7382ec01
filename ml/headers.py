"""Image headers of many files, read across cores: status, reason, width, height and bytes.

What the catalog knows of each plain file without decoding pixels. A plain JPEG (no EXIF block,
YCbCr or grayscale; most large datasets) is sized from its first 64 KiB by simplejpeg, about
7 us a file; every other file (PNG, an EXIF orientation, CMYK, a damaged header) goes through
ml.imageio.read_header (Pillow, ~35 us), which also says what is wrong with a bad one.

Large lists are split into chunks read by a process pool, one process per core (Pillow's
header parsing holds the GIL, so threads would not help); each chunk's results come back as one
list, so the per-file cost of the pool is a few bytes of pickling, not a future per file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from ml.errors import ImageError
from ml.file_bytes import read_file_head
from ml.imageio import EXIF_SEARCH_BYTES, MISSING, plain_jpeg_size, read_header
from ml.process_pool import pool_context
from ml.progress import Progress

Header = tuple[str, str, "int | None", "int | None", "int | None"]   # status, reason, w, h, bytes

CHUNK = 2048                 # files per task handed to a worker
PARALLEL_FROM = 20_000       # fewer files are read in this process (a pool costs ~0.1 s to start)


def file_header(path: str) -> Header:
    """('ok', '', width, height, bytes), or ('missing' | 'unreadable', reason, None, None,
    bytes or None). EXIF orientation is applied to the size."""
    try:
        head, size = read_file_head(path, EXIF_SEARCH_BYTES)
    except FileNotFoundError:
        return "missing", "no such file", None, None, None
    except OSError:                     # a folder named like an image, an I/O error
        return _pillow_header(path)
    wh = plain_jpeg_size(head)
    if wh is not None:
        return "ok", "", wh[0], wh[1], size
    return _pillow_header(path)


def status_of(error: ImageError) -> str:
    """The catalog status of an image that cannot be read: 'missing' or 'unreadable'."""
    return "missing" if error.reason == MISSING else "unreadable"


def _pillow_header(path: str) -> Header:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return "missing", "no such file", None, None, None
    except OSError:
        size = None
    try:
        h = read_header(path)
        return "ok", "", h.width, h.height, size
    except ImageError as exc:
        return status_of(exc), exc.reason, None, None, size


def headers_of(paths: Sequence[str]) -> list[Header]:
    """Headers of `paths`, in order, in this process (a pool worker's task)."""
    return [file_header(p) for p in paths]


def read_headers(paths: Sequence[str], *, workers: int | None = None,
                 progress: Progress | None = None) -> list[Header]:
    """Headers of `paths`, in order: in this process for a short list or one worker, else in
    a pool of `workers` processes (default: one per core). `progress` advances per chunk."""
    workers = workers or os.cpu_count() or 1
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    out: list[Header] = []
    if workers == 1 or len(paths) < PARALLEL_FROM:
        for chunk in chunks:
            out.extend(headers_of(chunk))
            if progress is not None:
                progress.advance(len(chunk))
        return out
    with ProcessPoolExecutor(max_workers=workers,
                             mp_context=pool_context(["ml.headers"])) as pool:
        for chunk, result in zip(chunks, pool.map(headers_of, chunks)):
            out.extend(result)
            if progress is not None:
                progress.advance(len(chunk))
    return out
