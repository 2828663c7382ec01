"""Metadata helpers: file locations, PNG pictures shown inline in the asset's markdown."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg

from ml.atomic import atomic_write_bytes


def png_markdown(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def save_png(png: bytes, path: Path) -> dg.MetadataValue:
    atomic_write_bytes(path, png)
    return dg.MetadataValue.path(str(path))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
