"""The catalog: one row per declared sample, built from a source reader without decoding pixels.

Columns (CATALOG_COLUMNS): a stable sample id (hash of the identifier, so it survives moving the
dataset), where the sample lives, its label (name and index), its group (identity, object
sequence or before/after pair), frame index, width, height, bytes, and a status: 'ok', 'missing',
'unreadable' (the header cannot be read) or 'invalid_path' (the identifier escapes the images
root; such files are never opened). Verification, not the catalog, decides what is usable.
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml.containers import read_member
from ml.dataset_spec import DatasetSpec
from ml.errors import ImageError, PathEscapeError, SourceError
from ml.headers import read_headers, status_of
from ml.imageio import read_header
from ml.progress import Progress, ProgressFactory
from ml.shards import shard_index, shard_of
from ml.sources import SOURCE_READERS, SourceRecord

CATALOG_COLUMNS = [
    "sample_id", "source_key", "path", "member", "label", "label_index", "supercategory",
    "group_id", "group_kind", "frame_index", "role", "width", "height", "bytes", "status",
    "reason", "used", "index_in_source",
]


def sample_id_for(source_key: str, member: str = "") -> str:
    """Stable id: depends only on the identifier, not on where the dataset lives."""
    return hashlib.sha1(f"{source_key}\x00{member}".encode()).hexdigest()[:16]


@dataclass
class CatalogResult:
    frame: pd.DataFrame
    invalid: list[tuple[str, str]] = field(default_factory=list)   # (identifier, why)

    def counts(self) -> dict[str, int]:
        f = self.frame
        return {
            "samples": len(f),
            "used": int(f["used"].sum()),
            "labels": int(f.loc[f["label"] != "", "label"].nunique()),
            "groups": int(f["group_id"].nunique()),
            **{f"status_{s}": int(n) for s, n in f["status"].value_counts().items()},
        }


def _label_indices(labels: pd.Series, names: set[str] | None = None) -> np.ndarray:
    """Numeric label names keep their number; other names are indexed in sorted order, among
    `names` (every label of the dataset, for a shard that holds only some) or `labels`' own."""
    names = sorted(set(labels[labels != ""].unique()) if names is None else names - {""})
    if len(names) and all(n.lstrip("-").isdigit() for n in names):
        numbers = pd.to_numeric(labels.where(labels != "", "-1"))
        return numbers.to_numpy(dtype="int64")
    codes = pd.Categorical(labels, categories=names).codes   # '' (unlabeled) -> -1
    return codes.astype("int64")


def _member_headers(records: list[SourceRecord]) -> list[tuple]:
    """Headers of samples inside a container (HDF5 member, RecordIO record): from the source
    when it knows the size (a RecordIO `property`), else from the member's bytes."""
    results = []
    for r in records:
        if r.width is not None and r.height is not None:
            results.append(("ok", "", r.width, r.height, None))    # from the source: no read
            continue
        try:
            data = read_member(r.path, r.member)
        except ImageError as exc:
            results.append((status_of(exc), exc.reason, None, None, None))
            continue
        try:
            h = read_header(data, name=f"{r.path}:{r.member}")
            results.append(("ok", "", h.width, h.height, len(data)))
        except ImageError as exc:
            results.append(("unreadable", exc.reason, None, None, len(data)))
    return results


def _headers(records: list[SourceRecord], workers: int | None,
             progress: Progress | None) -> list[tuple]:
    """One header tuple per record: plain files across cores (ml/headers.py), container
    members here; identifiers refused by the source are not opened."""
    results: list[tuple] = [None] * len(records)  # type: ignore[list-item]
    plain = [i for i, r in enumerate(records)
             if r.path and not r.member and not r.invalid_reason]
    for i, h in zip(plain, read_headers([records[i].path for i in plain], workers=workers,
                                        progress=progress)):
        results[i] = h
    members = [i for i, r in enumerate(records) if r.member and not r.invalid_reason]
    for i, h in zip(members, _member_headers([records[i] for i in members])):
        results[i] = h
    for i, r in enumerate(records):
        if r.invalid_reason:
            results[i] = ("invalid_path", r.invalid_reason, None, None, None)
    if progress is not None:
        progress.advance(len(records) - len(plain))
    return results


_TEXT_FIELDS = ("source_key", "path", "label", "member", "group_id")
_text_fields = operator.attrgetter(*_TEXT_FIELDS)


def _escaped(text: str) -> str:
    """A name whose bytes are not UTF-8 (kept by surrogateescape), with those bytes as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _refuse_undecodable_name(r: SourceRecord) -> SourceRecord:
    """A file or folder name (or label-file id) that is not valid UTF-8 cannot be stored or
    hashed as text: such a sample becomes invalid, with its bytes shown escaped, and the rest of
    the dataset goes on."""
    text = "".join(_text_fields(r))
    if text.isascii() or _is_utf8(text):                  # the common case, decided at once
        return r
    bad = [f for f in _TEXT_FIELDS if not getattr(r, f).isascii() and not _is_utf8(getattr(r, f))]
    if bad:
        shown = _escaped(r.source_key if "source_key" in bad else getattr(r, bad[0]))
        for f in bad:
            setattr(r, f, _escaped(getattr(r, f)))
        r.path = ""
        r.invalid_reason = (f"name is not valid UTF-8 (its bytes, escaped: {shown!r}); rename "
                            "the file or folder to UTF-8")
    return r


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@dataclass
class _SourceRead:
    records: list[SourceRecord]     # the ones this catalog keeps (its shard's, or all)
    declared: int                   # how many the source declares in all
    labels: set[str]                # every label name the source declares


def _read_source(spec: DatasetSpec, progress: Progress | None,
                 shard: str | None = None) -> _SourceRead:
    """Stream the source's records, keeping only `shard`'s (by sample id, ml/shards.py) when
    one is given, so a shard holds its own records and the set of label names, never the
    whole dataset."""
    index = None if shard is None else shard_index(shard, spec.shards)
    kept, labels, declared = [], set(), 0
    for record in SOURCE_READERS[spec.kind](spec):
        record = _refuse_undecodable_name(record)
        declared += 1
        labels.add(record.label)
        if index is None or shard_of(sample_id_for(record.source_key, record.member),
                                     spec.shards) == index:
            kept.append(record)
        if progress is not None and not declared % 4096:
            progress.advance(4096)
    if progress is not None:
        progress.advance(declared % 4096)
    return _SourceRead(kept, declared, labels)


def build_catalog(spec: DatasetSpec, *, workers: int | None = None,
                  progress_factory: ProgressFactory | None = None,
                  shard: str | None = None) -> CatalogResult:
    """Read the dataset's source and every image header; never decodes pixels or writes.

    With `shard` (a key of ml/shards.py's shard_keys(spec.shards)) only that shard's samples
    are kept and opened; label indices still count every label of the dataset, so shards
    agree on them. Progress: `progress_factory(total, what)` starts one Progress for reading
    the source (its total unknown, 0) and one for the headers.
    """
    reading = progress_factory(0, "reading source") if progress_factory else None
    source = _read_source(spec, reading, shard)
    records = source.records
    if reading is not None:
        reading.total = reading.done
        reading.finish()
    if not source.declared:
        raise SourceError(f"dataset {spec.name!r} ({spec.kind}) declares no images; check "
                          "its source paths in config/datasets.yaml")
    invalid = [(r.source_key, r.invalid_reason) for r in records if r.invalid_reason]
    if invalid and spec.on_invalid_path == "error":
        shown = "; ".join(f"{k!r}: {why}" for k, why in invalid[:5])
        raise PathEscapeError(f"dataset {spec.name!r}: {len(invalid)} identifier(s) point outside "
                              f"the images folder ({shown}). Fix the label file, or set "
                              "on_invalid_path: skip to report and exclude them")
    progress = progress_factory(len(records), "headers") if progress_factory else None
    frame = _frame_of(records, _headers(records, workers, progress), source.labels)
    dupes = frame["sample_id"].duplicated()
    if dupes.any():
        raise SourceError(f"dataset {spec.name!r}: identifiers declared twice: "
                          f"{frame.loc[dupes, 'source_key'].head(5).tolist()}")
    if progress is not None:
        progress.done = len(frame)
        progress.finish()
    return CatalogResult(frame=frame, invalid=invalid)


def _frame_of(records: list[SourceRecord], headers: list[tuple],
              label_names: set[str]) -> pd.DataFrame:
    """The catalog's columns, built column by column (no per-row dict)."""
    keys = [r.source_key for r in records]
    members = [r.member for r in records]
    ids = [sample_id_for(k, m) for k, m in zip(keys, members)]
    status, reason, width, height, size = ((list(c) for c in zip(*headers)) if headers
                                           else ([] for _ in range(5)))
    columns = {
        "sample_id": ids, "source_key": keys, "path": [r.path for r in records],
        "member": members, "label": [r.label for r in records],
        "supercategory": [r.supercategory for r in records],
        "group_id": [r.group_id or i for r, i in zip(records, ids)],
        "group_kind": [r.group_kind for r in records],
        "frame_index": np.fromiter((r.frame_index for r in records), "int64", len(records)),
        "role": [r.role for r in records],
        "width": pd.array(width, dtype="Int64"), "height": pd.array(height, dtype="Int64"),
        "bytes": pd.array(size, dtype="Int64"), "status": status, "reason": reason,
        "used": np.fromiter((bool(r.used) for r in records), bool, len(records)),
        "index_in_source": np.fromiter((r.index_in_source for r in records), "int64",
                                       len(records)),
    }
    frame = pd.DataFrame(columns)
    frame["label_index"] = _label_indices(frame["label"].astype(object), label_names)
    return frame[CATALOG_COLUMNS]


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
