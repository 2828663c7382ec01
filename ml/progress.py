"""Progress reporting for long work: done / total, rate and ETA, at most every few seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def start_progress(total: int, what: str, emit: Callable[[str], None] | None = None,
                   factory: ProgressFactory | None = None) -> Progress:
    """`factory(total, what)` when a caller gave one (the Dagster assets pass one that also
    publishes asset observations), else a Progress that logs through `emit`."""
    return factory(total, what) if factory is not None else Progress(total, what, emit=emit)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Counts work done and calls `emit(message)` at most once every `interval` seconds.

    `emit` defaults to logging.info on the `ml.progress` logger; Dagster assets pass
    `context.log.info`. `on_update(done, total, rate)` is called with every message (throttled
    the same way) and once more at `finish()`, so a caller can publish progress (the assets turn
    it into asset observations: assets/progress_observations.py).
    """

    def __init__(
        self,
        total: int,
        what: str = "items",
        interval: float = 5.0,
        emit: Callable[[str], None] | None = None,
        on_update: Callable[[int, int, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = int(total)
        self.what = what
        self.interval = float(interval)
        self.emit = emit or logging.getLogger("ml.progress").info
        self.on_update = on_update
        self.clock = clock
        self.done = 0
        self.start = clock()
        self._last = self.start
        self.messages = 0

    @property
    def rate(self) -> float:
        elapsed = self.clock() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def message(self) -> str:
        return f"{self.what}: {progress_text(self.done, self.total, self.rate)}"

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._report()

    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate; None before anything is done."""
        return _eta(self.done, self.total, self.rate)

    def _report(self) -> None:
        self.messages += 1
        self.emit(self.message())
        self._update()

    def _update(self) -> None:
        if self.on_update is not None:
            self.on_update(self.done, self.total, self.rate)

    def finish(self) -> None:
        elapsed = self.clock() - self.start
        self.messages += 1
        self.emit(f"{self.what}: {self.done}/{self.total} done in {format_duration(elapsed)} "
                  f"({self.rate:.1f}/s)")
        self._update()


ProgressFactory = Callable[[int, str], Progress]   # (total, what) -> a started Progress


def progress_text(done: int, total: int, rate: float) -> str:
    """'done/total (percent), rate/s, ETA t', or 'done so far, rate/s' while the total is not
    known yet (a source still being read)."""
    if total <= 0:
        return f"{done} so far, {rate:.1f}/s"
    left = _eta(done, total, rate)
    eta = format_duration(left) if left is not None else "?"
    return f"{done}/{total} ({100.0 * done / total:.1f}%), {rate:.1f}/s, ETA {eta}"


def _eta(done: int, total: int, rate: float) -> float | None:
    """Seconds left at `rate`; None when the total or the rate is not known yet."""
    if total <= 0 or rate <= 0:
        return None
    return max(0, total - done) / rate
