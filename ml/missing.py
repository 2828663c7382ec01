"""The runtime fallback for images that go missing or break during training (seed 000's
ALLOW_MISSING_IMAGES), made countable.

With `allow_missing`, a missing or undecodable image becomes a zeros placeholder of the expected
shape, flagged so the dataset can mark the sample, counted, and logged at most once every
`log_interval_s` with the running count. Without it, the first such image raises ImageError
naming the file. Seed 001 substituted dummy samples (target -1) without ever counting them; here
`total()` and `summary()` say how many were substituted when training ends.

Counts are local to the process (each DataLoader worker starts from zero after pickling) and
shared by its threads; `counts()` gives the per-file numbers for a trainer to gather across ranks.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from typing import Any, Callable, Union

import numpy as np

from ml.errors import ImageError
from ml.imageio import MISSING, TRUNCATED, UNSUPPORTED, load_rgb

Loader = Callable[[], Any]
ImageSource = Union[str, os.PathLike, Loader]
SUMMARY_EXAMPLES = 5


def _as_image_error(exc: BaseException, name: str) -> ImageError:
    """Classify an error from a loader as ImageError(name, reason, detail)."""
    if isinstance(exc, ImageError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return ImageError(name, MISSING, "no such file")
    if isinstance(exc, EOFError):
        return ImageError(name, TRUNCATED, str(exc) or "unexpected end of file")
    return ImageError(name, UNSUPPORTED, f"{type(exc).__name__}: {exc}")


class MissingImagePolicy:
    """Loads an image or, when allowed, substitutes a counted zeros placeholder."""

    def __init__(self, allow_missing: bool, log_interval_s: float = 5.0,
                 log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.allow_missing = bool(allow_missing)
        self.log_interval_s = float(log_interval_s)
        self.log = log or logging.getLogger(__name__).warning
        self.clock = clock
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._lock = threading.Lock()
        self._per_file: dict[str, int] = {}
        self._reasons: dict[str, str] = {}
        self._total = 0
        self._last_log: float | None = None

    def __getstate__(self) -> dict:
        """Pickled into a worker process: settings travel, counts start from zero there, and a
        `log` callable that cannot be pickled (a closure, Dagster's context.log) is replaced by
        this module's logger."""
        state = self.__dict__.copy()
        for key in ("_lock", "_per_file", "_reasons", "_total", "_last_log"):
            state.pop(key)
        try:
            pickle.dumps(state["log"])
        except Exception:
            state["log"] = logging.getLogger(__name__).warning
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_counts()

    def load(self, path_or_loader: ImageSource, shape: tuple[int, ...], *,
             name: str | None = None, dtype: Any = np.uint8) -> tuple[Any, bool]:
        """(image, False) when it loads; (zeros of `shape`, True) when it cannot and missing
        images are allowed; otherwise raises ImageError naming the file.

        A path is read with ml.imageio.load_rgb into an HxWx3 uint8 array; a callable is called
        and its result returned as is (it may raise ImageError, OSError, SyntaxError, ...).
        """
        label = name or (str(path_or_loader) if not callable(path_or_loader)
                         else getattr(path_or_loader, "__name__", repr(path_or_loader)))
        try:
            if callable(path_or_loader):
                return path_or_loader(), False
            return np.asarray(load_rgb(path_or_loader, name=label)), False
        except (ImageError, OSError, SyntaxError, EOFError) as exc:
            error = _as_image_error(exc, label)
        if not self.allow_missing:
            raise ImageError(error.path, error.reason,
                             f"{error.detail}; set allow_missing_images (seed 000: "
                             "DATA.HYBRID.ALLOW_MISSING_IMAGES) to train on with a zeros "
                             "placeholder, or fix the file") from None
        self._count(error)
        return np.zeros(shape, dtype=dtype), True

    def _count(self, error: ImageError) -> None:
        with self._lock:
            self._total += 1
            self._per_file[error.path] = self._per_file.get(error.path, 0) + 1
            self._reasons[error.path] = error.reason
            now = self.clock()
            due = self._last_log is None or now - self._last_log >= self.log_interval_s
            if due:
                self._last_log = now
                message = (f"{self._total} placeholder image(s) substituted so far "
                           f"({len(self._per_file)} file(s)); latest: {error}")
        if due:
            self.log(message)

    def total(self) -> int:
        """How many placeholders this process has substituted."""
        with self._lock:
            return self._total

    def counts(self) -> dict[str, int]:
        """Placeholders substituted per file, in this process."""
        with self._lock:
            return dict(self._per_file)

    def summary(self) -> str:
        """One line for the end of training: how many, how many files, which ones."""
        with self._lock:
            if not self._total:
                return "no placeholder images were substituted"
            worst = sorted(self._per_file.items(), key=lambda kv: (-kv[1], kv[0]))
            shown = ", ".join(f"{path} ({self._reasons[path]}, {n}x)"
                              for path, n in worst[:SUMMARY_EXAMPLES])
            more = (f" and {len(worst) - SUMMARY_EXAMPLES} more file(s)"
                    if len(worst) > SUMMARY_EXAMPLES else "")
            return (f"{self._total} placeholder image(s) substituted for {len(worst)} "
                    f"unreadable file(s): {shown}{more}")
