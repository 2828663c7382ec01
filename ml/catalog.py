"""The catalog: one row per declared sample, built from a source reader without decoding pixels.

Columns (CATALOG_COLUMNS): a stable sample id (hash of the identifier, so it survives moving the
dataset), where the sample lives, its label (name and index), its group (identity, object
sequence or before/after pair), frame index, width, height, bytes, and a status: 'ok', 'missing',
'unreadable' (the header cannot be read) or 'invalid_path' (the identifier escapes the images
root; such files are never opened). Verification, not the catalog, decides what is usable.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml.containers import read_member
from ml.dataset_spec import DatasetSpec
from ml.errors import ImageError, PathEscapeError, SourceError
from ml.imageio import MISSING, read_header
from ml.progress import Progress
from ml.sources import SOURCE_READERS, SourceRecord

CATALOG_COLUMNS = [
    "sample_id", "source_key", "path", "member", "label", "label_index", "supercategory",
    "group_id", "group_kind", "frame_index", "role", "width", "height", "bytes", "status",
    "reason", "used", "index_in_source",
]


def sample_id_for(source_key: str, member: str = "") -> str:
    """Stable id: depends only on the identifier, not on where the dataset lives."""
    return hashlib.sha1(f"{source_key}\x00{member}".encode("utf-8")).hexdigest()[:16]


@dataclass
class CatalogResult:
    frame: pd.DataFrame
    invalid: list[tuple[str, str]] = field(default_factory=list)   # (identifier, why)

    def counts(self) -> dict[str, int]:
        f = self.frame
        return {
            "samples": int(len(f)),
            "used": int(f["used"].sum()),
            "labels": int(f.loc[f["label"] != "", "label"].nunique()),
            "groups": int(f["group_id"].nunique()),
            **{f"status_{s}": int(n) for s, n in f["status"].value_counts().items()},
        }


def _label_indices(labels: pd.Series) -> pd.Series:
    """Numeric label names keep their number; other names are indexed in sorted order."""
    names = sorted({l for l in labels if l != ""})
    if names and all(n.lstrip("-").isdigit() for n in names):
        return labels.map(lambda l: int(l) if l != "" else -1).astype("int64")
    index = {n: i for i, n in enumerate(names)}
    return labels.map(lambda l: index.get(l, -1)).astype("int64")


def _file_header(path: str) -> tuple[str, str, int | None, int | None, int | None]:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return "missing", "no such file", None, None, None
    try:
        h = read_header(path)
        return "ok", "", h.width, h.height, size
    except ImageError as exc:
        status = "missing" if exc.reason == MISSING else "unreadable"
        return status, exc.reason, None, None, size


def _headers(records: list[SourceRecord], workers: int, progress: Progress | None):
    results: list[tuple] = [None] * len(records)  # type: ignore[list-item]
    plain = [i for i, r in enumerate(records) if r.path and not r.member]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for n, (i, res) in enumerate(zip(plain, pool.map(_file_header,
                                                         [records[i].path for i in plain],
                                                         chunksize=64))):
            results[i] = res
            if progress and n % 64 == 63:
                progress.advance(64)
    for i, r in enumerate(records):
        if not r.member:
            continue
        if r.width is not None and r.height is not None:   # the source knows (RecordIO property)
            results[i] = ("ok", "", r.width, r.height, None)
            continue
        try:
            data = read_member(r.path, r.member)
        except ImageError as exc:
            results[i] = ("missing" if exc.reason == MISSING else "unreadable", exc.reason,
                          None, None, None)
            continue
        try:
            h = read_header(data, name=f"{r.path}:{r.member}")
            results[i] = ("ok", "", h.width, h.height, len(data))
        except ImageError as exc:
            results[i] = ("unreadable", exc.reason, None, None, len(data))
    return results


_TEXT_FIELDS = ("source_key", "path", "label", "member", "group_id")


def _escaped(text: str) -> str:
    """A name whose bytes are not UTF-8 (kept by surrogateescape), with those bytes as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _refuse_undecodable_names(records: list[SourceRecord]) -> None:
    """A file or folder name (or label-file id) that is not valid UTF-8 cannot be stored or
    hashed as text: such a sample becomes invalid, with its bytes shown escaped, and the rest of
    the dataset goes on."""
    for r in records:
        bad = [f for f in _TEXT_FIELDS if not getattr(r, f).isascii()
               and not _is_utf8(getattr(r, f))]
        if not bad:
            continue
        shown = _escaped(r.source_key if "source_key" in bad else getattr(r, bad[0]))
        for f in bad:
            setattr(r, f, _escaped(getattr(r, f)))
        r.path = ""
        r.invalid_reason = (f"name is not valid UTF-8 (its bytes, escaped: {shown!r}); rename "
                            "the file or folder to UTF-8")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def build_catalog(spec: DatasetSpec, *, workers: int = 8,
                  progress: Progress | None = None) -> CatalogResult:
    """Read the dataset's source and every image header; never decodes pixels or writes."""
    reader = SOURCE_READERS[spec.kind]
    records = list(reader(spec))
    _refuse_undecodable_names(records)
    if not records:
        raise SourceError(f"dataset {spec.name!r} ({spec.kind}) declares no images; check "
                          "its source paths in config/datasets.yaml")
    invalid = [(r.source_key, r.invalid_reason) for r in records if r.invalid_reason]
    if invalid and spec.on_invalid_path == "error":
        shown = "; ".join(f"{k!r}: {why}" for k, why in invalid[:5])
        raise PathEscapeError(f"dataset {spec.name!r}: {len(invalid)} identifier(s) point outside "
                              f"the images folder ({shown}). Fix the label file, or set "
                              "on_invalid_path: skip to report and exclude them")
    if progress is not None:
        progress.total = len(records)
    headers = _headers([r for r in records], workers, progress)
    rows = []
    for r, h in zip(records, headers):
        if r.invalid_reason:
            status, reason, w, hgt, size = "invalid_path", r.invalid_reason, None, None, None
        else:
            status, reason, w, hgt, size = h
        rows.append({
            "sample_id": sample_id_for(r.source_key, r.member), "source_key": r.source_key,
            "path": r.path, "member": r.member, "label": r.label, "supercategory": r.supercategory,
            "group_id": r.group_id or sample_id_for(r.source_key, r.member),
            "group_kind": r.group_kind, "frame_index": r.frame_index, "role": r.role,
            "width": w, "height": hgt, "bytes": size, "status": status, "reason": reason,
            "used": bool(r.used), "index_in_source": r.index_in_source,
        })
    frame = pd.DataFrame(rows)
    frame["label_index"] = _label_indices(frame["label"])
    for col in ("width", "height", "bytes"):
        frame[col] = frame[col].astype("Int64")
    frame["frame_index"] = frame["frame_index"].astype("int64")
    frame["index_in_source"] = frame["index_in_source"].astype("int64")
    dupes = frame["sample_id"].duplicated()
    if dupes.any():
        raise SourceError(f"dataset {spec.name!r}: identifiers declared twice: "
                          f"{frame.loc[dupes, 'source_key'].head(5).tolist()}")
    if progress is not None:
        progress.done = len(frame)
        progress.finish()
    return CatalogResult(frame=frame[CATALOG_COLUMNS], invalid=invalid)


def usable(frame: pd.DataFrame, exclude: set[str] | frozenset[str] = frozenset()) -> pd.DataFrame:
    """Rows a downstream step may use: used by the dataset, header readable, not excluded."""
    mask = frame["used"] & (frame["status"] == "ok") & ~frame["sample_id"].isin(exclude)
    return frame.loc[mask]


def class_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()}


def summarize_sizes(frame: pd.DataFrame) -> dict[str, float]:
    ok = frame.dropna(subset=["width", "height"])
    if ok.empty:
        return {}
    w, h = ok["width"].to_numpy(np.int64), ok["height"].to_numpy(np.int64)
    return {"min_width": int(w.min()), "max_width": int(w.max()), "min_height": int(h.min()),
            "max_height": int(h.max()), "total_bytes": int(frame["bytes"].fillna(0).sum())}
