"""Events out of a trainer: log lines, metrics per step/epoch, artifacts and the final summary.

A trainer never prints or talks to Dagster directly; it calls a Reporter. The default sink writes
one JSON object per line to stdout (and optionally to a JSONL file), so `python -m ml.train` is
readable on a terminal and machine-readable. The Dagster Pipes bridge (resources/pipes_entry.py)
passes a sink that forwards events to the orchestrating run. Under torchrun only rank 0 reports.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

Event = dict[str, Any]
Sink = Callable[[Event], None]


def stdout_sink(event: Event) -> None:
    sys.stdout.write(json.dumps(event, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):           # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Reporter:
    """Emits events {"event": kind, "time": unix seconds, ...} to every sink (rank 0 only).

    kinds: "log" (message), "metric" (step, epoch and named float values), "artifact" (name,
    path), "summary" (the run's result: the figures the launching asset records as metadata).
    `history` keeps every metric event so a trainer can plot curves at the end.
    """

    def __init__(self, sinks: list[Sink] | None = None, *, enabled: bool = True,
                 jsonl_path: str | Path | None = None):
        self.sinks = list(sinks) if sinks is not None else [stdout_sink]
        self.enabled = enabled
        self.history: list[Event] = []
        self.summary: dict[str, Any] = {}
        self._jsonl = open(jsonl_path, "a", encoding="utf-8") if (jsonl_path and enabled) else None

    def _emit(self, event: Event) -> None:
        if not self.enabled:
            return
        event = {"event": event.pop("event"), "time": round(time.time(), 3), **event}
        for sink in self.sinks:
            sink(event)
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(event, default=_jsonable) + "\n")
            self._jsonl.flush()

    def log(self, message: str) -> None:
        self._emit({"event": "log", "message": message})

    def metric(self, step: int, epoch: int | None = None, **values: float) -> None:
        event = {"event": "metric", "step": int(step), "epoch": epoch,
                 **{k: float(v) for k, v in values.items()}}
        self.history.append(dict(event))
        self._emit(event)

    def artifact(self, name: str, path: str | Path) -> None:
        self._emit({"event": "artifact", "name": name, "path": str(path)})

    def finish(self, **summary: Any) -> dict[str, Any]:
        self.summary = summary
        self._emit({"event": "summary", **summary})
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        return summary

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric over the run, for plotting."""
        pts = [(e["step"], e[name]) for e in self.history if name in e]
        return [s for s, _ in pts], [v for _, v in pts]
