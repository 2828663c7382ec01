"""Metadata helpers: file locations, PNG pictures shown inline in the asset's markdown."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from PIL import Image

from ml.atomic import atomic_write_bytes


FIGURE_DIGITS = 4       # significant digits a figure is shown with (0.93, not 0.9299999999999999)


def for_people(value: float) -> float:
    """A figure rounded to FIGURE_DIGITS significant digits."""
    return float(f"{value:.{FIGURE_DIGITS}g}")


INLINE_IMAGE_BYTES = 16_000   # per picture in a markdown value (before base64): 3 fit in 64 KB


def image_markdown(png: bytes, alt: str, budget: int = INLINE_IMAGE_BYTES) -> str:
    """A picture inlined in markdown in at most `budget` bytes (before base64's 4/3): the PNG
    itself when it is small enough, else in 64 colours (charts), else a JPEG of it (photos),
    its quality and then its size stepped down until it fits. Every materialization keeps its metadata, so a thumbnail grid of
    photos (75 KB as PNG) must not ride along whole; the full PNG is saved beside the asset."""
    if len(png) <= budget:
        return _data_uri_markdown(png, "png", alt)
    img = Image.open(io.BytesIO(png)).convert("RGB")
    buf = io.BytesIO()
    img.quantize(colors=64).save(buf, format="PNG", optimize=True)   # charts: few colours
    if buf.tell() <= budget:
        return _data_uri_markdown(buf.getvalue(), "png", alt)
    while True:
        for quality in (85, 70, 50):
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality, optimize=True)
            if buf.tell() <= budget or min(img.size) <= 32:
                return _data_uri_markdown(buf.getvalue(), "jpeg", alt)
        img = img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.LANCZOS)


def _data_uri_markdown(data: bytes, kind: str, alt: str) -> str:
    return f"![{alt}](data:image/{kind};base64,{base64.b64encode(data).decode('ascii')})"


def save_png(png: bytes, path: Path) -> dg.MetadataValue:
    atomic_write_bytes(path, png)
    return dg.MetadataValue.path(str(path))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


CLASSES_SHOWN = 50


def class_count_summary(counts: Mapping[str, int], shown: int = CLASSES_SHOWN) -> dict:
    """Per-class counts as metadata of bounded size: the number of classes, the smallest, median
    and largest class, and the `shown` largest classes by name. Every materialization stores its
    metadata, so a dict of all 85k identities (1-3 MB) per run is not an option; the full
    counts are in the asset's own Parquet (label column)."""
    values = np.fromiter(counts.values(), np.int64, len(counts))
    largest = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:shown]
    return {"classes": len(counts),
            "min": int(values.min()) if len(values) else 0,
            "median": float(np.median(values)) if len(values) else 0.0,
            "max": int(values.max()) if len(values) else 0,
            "largest": {str(k): int(v) for k, v in largest}}


BAD_SAMPLE_COLUMNS = ("source_key", "status", "reason", "detail", "dropped_by")
SHOWN_BAD_SAMPLES = 100       # rows of the table in metadata; the JSON report lists them all
SHOWN_TEXT = 80               # characters of a value shown: the table stays under 40 KB


def bad_samples_table(table) -> dg.TableMetadataValue:
    """The first SHOWN_BAD_SAMPLES samples the dataset uses whose status is not ok, as a table
    the UI shows (identifier, status, reason, detail, the stage that dropped it)."""
    shown = np.flatnonzero((table["status"] != "ok").to_numpy()
                           & table["used"].to_numpy(bool))[:SHOWN_BAD_SAMPLES]
    bad = pd.DataFrame({name: table[name].iloc[shown].to_numpy()   # column by column: no
                        for name in BAD_SAMPLE_COLUMNS})          # copy of a whole frame
    records = [dg.TableRecord({name: str(value)[:SHOWN_TEXT] for name, value in row.items()})
               for row in bad.to_dict("records")]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(
        columns=[dg.TableColumn(name, "string") for name in BAD_SAMPLE_COLUMNS]))
