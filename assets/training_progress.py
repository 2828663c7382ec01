"""Live training figures in the UI: the trainer's events become asset observations while it runs.

The trainer appends every event to `<out>/events.jsonl` (ml/train/report.py). While the model
asset waits for the trainer, a thread reads the lines appended since the launch and logs an
AssetObservation of `<dataset>/model` for each evaluation and for a step at most every few
seconds (the terminal's throttle): loss, learning rate and images/s as numbers the asset page
plots, and the readable line ("epoch 2/4, step 40/160 (25.0%): ... ETA 1m20s") as text.
Observations are written to the run's event log when logged, so the UI shows them during the
run. Reading the file, not the Pipes channel, keeps this the same for every launcher whose
output folder the step can read.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any, Iterator

import dagster as dg

from assets.metadata import for_people
from ml.train.report import Throttle, describe, metric_values

POLL_S = 1.0


class EventsTail:
    """The complete JSON lines appended to a file since this object was made."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.is_file() else 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events


def observation_metadata(event: dict[str, Any]) -> dict[str, Any]:
    """A metric event as observation metadata: its figures (and images/s) as numbers, the
    readable line as text; epoch counts and the ETA stay in the text, out of the plots."""
    numbers = {k: v for k, v in metric_values(event).items() if isinstance(v, (int, float))}
    if "images_per_s" in event:
        numbers["images_per_s"] = event["images_per_s"]
    meta: dict[str, Any] = {k: dg.MetadataValue.float(for_people(float(v)))
                            for k, v in numbers.items()}
    meta["progress"] = dg.MetadataValue.text(describe(event))
    meta["step"] = dg.MetadataValue.int(int(event["step"]))
    return meta


@contextlib.contextmanager
def observing_training(context: dg.AssetExecutionContext, asset_key: dg.AssetKey,
                       events_path: Path) -> Iterator[None]:
    """While the body runs, turn the trainer's new metric events into observations."""
    tail, throttle, stop = EventsTail(events_path), Throttle(), threading.Event()

    def publish() -> None:
        for event in tail.read():
            if event.get("event") == "metric" and throttle.due(event):
                context.log_event(dg.AssetObservation(asset_key=asset_key,
                                                      metadata=observation_metadata(event)))

    def watch() -> None:
        while not stop.wait(POLL_S):
            publish()

    thread = threading.Thread(target=watch, name="training-observations", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        publish()
