"""Events out of a trainer: log lines, metrics per step/epoch, artifacts and the final summary.

A trainer never prints or talks to Dagster directly; it calls a Reporter. Sinks receive every
event as a dict; `--events FILE` keeps every one as a JSON line (machine-readable), the terminal
gets readable lines (`readable_sink`: step lines at most every few seconds, every evaluation),
and TensorBoard gets the scalars, a few input images and the pictures (ml/train/tensorboard.py).
The Dagster Pipes bridge (resources/pipes_entry.py) passes a sink that forwards readable lines
to the run's log. Under torchrun only rank 0 reports.

Once a trainer calls `plan(epochs, steps_per_epoch, images_per_step, start_step)`, every step
metric also carries the run's progress: `epochs` (the total), `total_steps`, `images_per_s` and
`eta_s` (from the rate since the plan), which `describe` turns into
"epoch 2/4, step 40/160 (25.0%): loss 1.234, lr 0.001 | 312 images/s, ETA 1m20s".
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ml.progress import format_duration

Event = dict[str, Any]
Sink = Callable[[Event], None]
PROGRESS_KEYS = ("epochs", "total_steps", "images_per_s", "eta_s")
SHOW_EVERY_S = 5.0       # a step line at most this often (evaluations and logs always show)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):           # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def metric_values(event: Event) -> dict[str, float]:
    """A metric event's own figures (loss, lr, accuracies), without step, epoch and progress."""
    return {k: v for k, v in event.items()
            if k not in ("event", "time", "step", "epoch", "phase", *PROGRESS_KEYS)}


def describe(event: Event) -> str:
    """One readable line for an event."""
    kind = event.get("event")
    if kind == "log":
        return str(event["message"])
    if kind == "artifact":
        return f"{event['name']}: {event['path']}"
    if kind == "summary":
        figures = {k: v for k, v in event.items() if k not in ("event", "time")
                   and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return "summary: " + ", ".join(f"{k} {v:.4g}" for k, v in figures.items())
    if kind != "metric":
        return json.dumps(event, default=_jsonable)
    epoch = event.get("epoch")
    where = f"epoch {epoch}/{event['epochs']}" if "epochs" in event and epoch is not None \
        else (f"epoch {epoch}" if epoch is not None else "")
    total = event.get("total_steps")
    step = event["step"]
    where += (", " if where else "") + (f"step {step}/{total} ({100.0 * step / total:.1f}%)"
                                        if total else f"step {step}")
    if event.get("phase") == "eval":
        where += " evaluation"
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metric_values(event).items())
    line = f"{where}: {shown}"
    if "images_per_s" in event:
        line += f" | {event['images_per_s']:.0f} images/s, ETA {format_duration(event['eta_s'])}"
    return line


class Throttle:
    """Which events are worth showing: every log, artifact, summary and evaluation; a step metric
    when SHOW_EVERY_S have passed since the last one shown (by the events' own clock), and the
    first and last step."""

    def __init__(self, every_s: float = SHOW_EVERY_S):
        self.every_s = every_s
        self._last: float | None = None

    def due(self, event: Event) -> bool:
        if event.get("event") != "metric" or event.get("phase") == "eval":
            return True
        now = float(event.get("time", time.time()))
        last_step = event.get("total_steps") is not None and event["step"] >= event["total_steps"]
        if self._last is None or last_step or now - self._last >= self.every_s:
            self._last = now
            return True
        return False


def readable_sink(write: Callable[[str], None] | None = None,
                  every_s: float = SHOW_EVERY_S) -> Sink:
    """A sink that writes `describe(event)` lines (to stdout unless `write` is given), step
    metrics throttled."""
    throttle = Throttle(every_s)

    def show(event: Event) -> None:
        if throttle.due(event):
            if write is not None:
                write(describe(event))
            else:
                sys.stdout.write(describe(event) + "\n")
                sys.stdout.flush()
    return show


@dataclass
class _Plan:
    epochs: int
    steps_per_epoch: int
    images_per_step: int
    start_step: int
    started: float

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def progress(self, step: int, now: float) -> dict[str, Any]:
        done, elapsed = step - self.start_step, now - self.started
        fields: dict[str, Any] = {"epochs": self.epochs, "total_steps": self.total_steps}
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            fields.update(images_per_s=round(rate * self.images_per_step, 1),
                          eta_s=round(max(0, self.total_steps - step) / rate, 1))
        return fields


class Reporter:
    """Emits events {"event": kind, "time": unix seconds, ...} to every sink (rank 0 only).

    kinds: "log" (message), "metric" (step, epoch and named float values), "artifact" (name,
    path), "summary" (the run's result: the figures the launching asset records as metadata).
    `history` keeps every metric event so a trainer can plot curves at the end.
    """

    def __init__(self, sinks: list[Sink] | None = None, *, enabled: bool = True,
                 jsonl_path: str | Path | None = None, tensorboard_dir: str | Path | None = None):
        self.sinks = list(sinks) if sinks is not None else [readable_sink()]
        self.enabled = enabled
        self.history: list[Event] = []
        self.summary: dict[str, Any] = {}
        self._plan: _Plan | None = None
        self._jsonl = open(jsonl_path, "a", encoding="utf-8") if (jsonl_path and enabled) else None
        self._board = None
        if tensorboard_dir is not None and enabled:
            from ml.train.tensorboard import TensorBoardSink
            self._board = TensorBoardSink(tensorboard_dir)
            self.sinks.append(self._board)

    def plan(self, epochs: int, steps_per_epoch: int, images_per_step: int,
             start_step: int = 0) -> None:
        """The run's shape, so step metrics carry epoch k of n, images/s and the ETA."""
        self._plan = _Plan(int(epochs), max(1, int(steps_per_epoch)), int(images_per_step),
                           int(start_step), time.monotonic())

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
        """Figures of one training step (loss, lr, ...), with the run's progress once planned."""
        event = {"event": "metric", "step": int(step), "epoch": epoch,
                 **{k: float(v) for k, v in values.items()}}
        self.history.append(dict(event))
        if self._plan is not None:
            event.update(self._plan.progress(int(step), time.monotonic()))
        self._emit(event)

    def evaluation(self, step: int, epoch: int | None = None, **values: float) -> None:
        """Figures of an evaluation (accuracies, PSNR, ...): always shown, kept in the history."""
        event = {"event": "metric", "phase": "eval", "step": int(step), "epoch": epoch,
                 **{k: float(v) for k, v in values.items()}}
        self.history.append({k: v for k, v in event.items() if k != "phase"})
        if self._plan is not None:
            event.update(epochs=self._plan.epochs, total_steps=self._plan.total_steps)
        self._emit(event)

    def images(self, tag: str, step: int, batch: Any) -> None:
        """A few input images (N x C x H x W, uint8 or float) for TensorBoard; nothing else
        receives pixels."""
        if self.enabled and self._board is not None:
            self._board.images(tag, step, batch)

    def artifact(self, name: str, path: str | Path) -> None:
        self._emit({"event": "artifact", "name": name, "path": str(path)})

    def finish(self, **summary: Any) -> dict[str, Any]:
        self.summary = summary
        self._emit({"event": "summary", **summary})
        self.close()
        return summary

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._board is not None:
            self._board.close()
            self._board = None

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric over the run, for plotting."""
        pts = [(e["step"], e[name]) for e in self.history if name in e]
        return [s for s, _ in pts], [v for _, v in pts]
