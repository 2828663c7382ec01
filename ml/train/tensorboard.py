"""TensorBoard event files for a training run: `<out>/tb/` (`make tensorboard` serves them).

A Reporter sink (ml/train/report.py): step metrics go under `train/<name>` (loss, lr,
images_per_s), evaluation figures under `eval/<name>`, a few input images under `inputs/`, and
every PNG a trainer reports (curves, ROC, confusion matrix, prediction grids) under `pictures/`.
Written with torch.utils.tensorboard (the `tensorboard` package), so TensorBoard, and anything
that reads its event files, reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ml.train.report import Event, metric_values

IMAGES_SHOWN = 16         # input images per call
TENSORBOARD_DIR = "tb"    # <out>/tb: a run's event files


class TensorBoardSink:
    def __init__(self, logdir: str | Path):
        from torch.utils.tensorboard import SummaryWriter
        self.logdir = Path(logdir)
        self.writer = SummaryWriter(log_dir=str(self.logdir), flush_secs=10)

    def __call__(self, event: Event) -> None:
        kind = event.get("event")
        if kind == "metric":
            prefix = "eval" if event.get("phase") == "eval" else "train"
            step, wall = int(event["step"]), event.get("time")
            values = metric_values(event)
            if "images_per_s" in event:
                values["images_per_s"] = event["images_per_s"]
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{name}", float(value), step, walltime=wall)
        elif kind == "artifact" and str(event.get("path", "")).endswith(".png"):
            path = Path(event["path"])
            if path.is_file():
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(f"pictures/{event['name']}", pixels, dataformats="HWC")
        elif kind == "summary":
            self.writer.add_text("summary", describe_summary(event))

    def images(self, tag: str, step: int, batch: Any) -> None:
        """Up to IMAGES_SHOWN images of an N x C x H x W batch; floats are stretched to 0..1
        per batch (they arrive normalised)."""
        array = batch.detach().cpu().numpy() if hasattr(batch, "detach") else np.asarray(batch)
        array = array[:IMAGES_SHOWN]
        if array.dtype != np.uint8:
            array = array.astype(np.float32)
            low, high = float(array.min()), float(array.max())
            array = (array - low) / (high - low) if high > low else np.zeros_like(array)
        self.writer.add_images(f"inputs/{tag}", array, int(step), dataformats="NCHW")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def describe_summary(event: Event) -> str:
    """The summary as a Markdown table for TensorBoard's text tab."""
    rows = [f"| {k} | {v} |" for k, v in event.items()
            if k not in ("event", "time") and not isinstance(v, (dict, list))]
    return "\n".join(["| figure | value |", "| --- | --- |", *rows])
