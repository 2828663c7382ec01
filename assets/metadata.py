"""Metadata helpers: file locations, PNG pictures shown inline in the asset's markdown."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import numpy as np

from ml.atomic import atomic_write_bytes


def png_markdown(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


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
