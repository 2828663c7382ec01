"""The catalog: one row per declared sample, built from a source reader without decoding pixels.

Columns (CATALOG_COLUMNS): a stable sample id (hash of the identifier, so it survives moving the
dataset), where the sample lives, its label (name and index), its group (identity, object
sequence or before/after pair), frame index, width, height, bytes, and the sample table's status columns (ml/sample_status.py):
status 'ok', 'missing', 'corrupt' (the header cannot be read) or 'invalid' (the identifier
escapes the images root; such files are never opened), its reason, and dropped_by 'catalog' for
a bad one. Verification, not the catalog, decides what is usable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from ml.columns import is_utf8, text_column
from ml.containers import read_member
from ml.dataset_spec import DatasetSpec
from ml.errors import ImageError, PathEscapeError, SourceError
from ml.headers import HeaderColumns, read_headers, status_of
from ml.imageio import read_header
from ml.progress import Progress, ProgressFactory
from ml.sample_status import CATALOG, CORRUPT, INVALID, OK
from ml.partitions import partition_codes, partition_index
from ml.sources import SOURCE_KINDS, SourceRecord

CATALOG_COLUMNS = [
    "sample_id", "source_key", "path", "member", "label", "label_index", "supercategory",
    "group_id", "group_kind", "frame_index", "role", "width", "height", "bytes", "status",
    "reason", "dropped_by", "used", "index_in_source",
]


def sample_id_for(source_key: str, member: str = "") -> str:
    """Stable id: depends only on the identifier, not on where the dataset lives."""
    return sample_ids([source_key], [member])[0]


def sample_ids(source_keys, members) -> list[str]:
    """sample_id_for of whole columns: sha1 of key NUL member, its first 16 hex digits."""
    sha1 = hashlib.sha1
    return [sha1(f"{k}\x00{m}".encode()).hexdigest()[:16] for k, m in zip(source_keys, members)]


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
    `names` (every label of the dataset, for a partition that holds only some) or `labels`' own."""
    names = sorted(set(labels[labels != ""].unique()) if names is None else names - {""})
    if len(names) and all(n.lstrip("-").isdigit() for n in names):
        codes, distinct = pd.factorize(labels, use_na_sentinel=False)   # each name parsed once
        distinct = pd.Series(distinct, dtype=object)
        return pd.to_numeric(distinct.where(distinct != "", "-1")).to_numpy("int64")[codes]
    codes = pd.Categorical(labels, categories=names).codes   # '' (unlabeled) -> -1
    return codes.astype("int64")


SOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(SourceRecord))
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SourceRecord)
             if f.default is not dataclasses.MISSING}
_record_values = operator.attrgetter(*SOURCE_FIELDS)
CHUNK = 65_536          # records turned into columns at a time: the Python objects do not pile up
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
    if text.isascii() or is_utf8(text):                   # the common case, decided at once
        return r
    bad = [f for f in _TEXT_FIELDS if not getattr(r, f).isascii() and not is_utf8(getattr(r, f))]
    shown = _escaped(r.source_key if "source_key" in bad else getattr(r, bad[0]))
    for f in bad:
        setattr(r, f, _escaped(getattr(r, f)))
    r.path = ""
    r.invalid_reason = (f"name is not valid UTF-8 (its bytes, escaped: {shown!r}); rename "
                        "the file or folder to UTF-8")
    return r


def _columns_of(records: list[SourceRecord]) -> pd.DataFrame:
    """Records as source columns, one per SourceRecord field."""
    return pd.DataFrame([_record_values(r) for r in records], columns=list(SOURCE_FIELDS))


def _complete(batch: pd.DataFrame) -> pd.DataFrame:
    """A reader's batch of columns with every SourceRecord field (its default where absent)."""
    absent = {f: _DEFAULTS[f] for f in SOURCE_FIELDS if f not in batch}
    return batch.assign(**absent)[list(SOURCE_FIELDS)].reset_index(drop=True)


@dataclass
class _SourceRead:
    columns: pd.DataFrame           # SOURCE_FIELDS + sample_id: the rows this catalog keeps
    declared: int                   # how many samples the source declares in all
    labels: set[str]                # every label name the source declares


def _read_source(spec: DatasetSpec, progress: Progress | None,
                 partition: str | None = None) -> _SourceRead:
    """Stream the source's declarations (SourceRecords, or batches of columns from a reader
    that has them as arrays) into columns, CHUNK records at a time, keeping only `partition`'s
    rows (by sample id, ml/partitions.py) when one is given: a partition holds its own rows and
    the set of label names, never the whole dataset."""
    index = None if partition is None else partition_index(partition, spec.partitions)
    parts: list[pd.DataFrame] = []
    pending: list[SourceRecord] = []
    labels: set[str] = set()
    declared = 0

    def keep(part: pd.DataFrame) -> None:
        ids = sample_ids(part["source_key"].to_numpy(dtype=object),
                         part["member"].to_numpy(dtype=object))
        part = part.assign(sample_id=ids)
        labels.update(part["label"].unique().tolist())
        if index is not None:
            part = part.loc[partition_codes(ids, spec.partitions) == index]
        parts.append(part)

    for item in SOURCE_KINDS[spec.kind].read(spec):
        if isinstance(item, pd.DataFrame):
            declared += len(item)
            keep(_complete(item))
            if progress is not None:
                progress.advance(len(item))
            continue
        pending.append(_refuse_undecodable_name(item))
        declared += 1
        if len(pending) == CHUNK:
            keep(_columns_of(pending))
            pending = []
        if progress is not None and not declared % 4096:
            progress.advance(4096)
    if pending or not parts:
        keep(_columns_of(pending))
    if progress is not None:
        progress.done = declared
    return _SourceRead(pd.concat(parts, ignore_index=True), declared, labels)


def _member_header(path: str, member: str) -> tuple:
    """The header of a sample inside a container (HDF5 member, RecordIO record) whose size the
    source does not know: from the member's bytes."""
    try:
        data = read_member(path, member)
    except ImageError as exc:
        return status_of(exc), exc.reason, None, None, None
    try:
        h = read_header(data, name=f"{path}:{member}")
        return OK, "", h.width, h.height, len(data)
    except ImageError as exc:
        return CORRUPT, exc.reason, None, None, len(data)


def _headers(source: pd.DataFrame, workers: int | None,
             progress: Progress | None) -> HeaderColumns:
    """Header columns (status, reason, width, height, bytes) of every row: plain files across
    cores (ml/headers.py); container members from the source when it knows their size (a
    RecordIO `property`: nothing read), else here; identifiers refused by the source are never
    opened."""
    n = len(source)
    columns = HeaderColumns.empty(n)
    invalid = (source["invalid_reason"] != "").to_numpy()
    member = (source["member"] != "").to_numpy() & ~invalid
    plain = np.flatnonzero((source["path"] != "").to_numpy() & ~member & ~invalid)
    read = read_headers(text_column(source["path"]).take(pa.array(plain)), workers=workers,
                        progress=progress)
    for name in ("status", "reason", "width", "height", "size"):
        getattr(columns, name)[plain] = getattr(read, name)
    known = member & source["width"].notna().to_numpy() & source["height"].notna().to_numpy()
    columns.width[known] = source["width"].to_numpy()[known]
    columns.height[known] = source["height"].to_numpy()[known]
    for i in np.flatnonzero(member & ~known):
        columns.fill(int(i), [_member_header(source["path"].iat[i], source["member"].iat[i])])
    nowhere = ~invalid & ~member & (source["path"] == "").to_numpy()
    columns.status[invalid | nowhere] = INVALID
    columns.reason[invalid] = source["invalid_reason"].to_numpy()[invalid]
    columns.reason[nowhere] = "no path"
    if progress is not None:
        progress.advance(n - len(plain))
    return columns


def build_catalog(spec: DatasetSpec, *, workers: int | None = None,
                  progress_factory: ProgressFactory | None = None,
                  partition: str | None = None) -> CatalogResult:
    """Read the dataset's source and every image header; never decodes pixels or writes.

    With `partition` (a key of ml/partitions.py's partition_keys(spec.partitions)) only that
    partition's samples are kept and opened; label indices still count every label of the dataset, so partitions
    agree on them. Progress: `progress_factory(total, what)` starts one Progress for reading
    the source (its total unknown, 0) and one for the headers.
    """
    reading = progress_factory(0, "reading source") if progress_factory else None
    source = _read_source(spec, reading, partition)
    if reading is not None:
        reading.total = reading.done
        reading.finish()
    if not source.declared:
        raise SourceError(f"dataset {spec.name!r} ({spec.kind}) declares no images; check "
                          "its source paths in config/datasets.yaml")
    rows = source.columns
    refused = rows.loc[rows["invalid_reason"] != "", ["source_key", "invalid_reason"]]
    invalid = list(refused.itertuples(index=False, name=None))
    if invalid and spec.on_invalid_path == "error":
        shown = "; ".join(f"{k!r}: {why}" for k, why in invalid[:5])
        raise PathEscapeError(f"dataset {spec.name!r}: {len(invalid)} identifier(s) point outside "
                              f"the images folder ({shown}). Fix the label file, or set "
                              "on_invalid_path: skip to report and exclude them")
    progress = progress_factory(len(rows), "headers") if progress_factory else None
    frame = _frame_of(rows, _headers(rows, workers, progress), source.labels)
    dupes = frame["sample_id"].duplicated()
    if dupes.any():
        raise SourceError(f"dataset {spec.name!r}: identifiers declared twice: "
                          f"{frame.loc[dupes, 'source_key'].head(5).tolist()}")
    if progress is not None:
        progress.done = len(frame)
        progress.finish()
    return CatalogResult(frame=frame, invalid=invalid)


def _frame_of(source: pd.DataFrame, headers: HeaderColumns,
              label_names: set[str]) -> pd.DataFrame:
    """The catalog's columns from the source's columns and the headers (no Python per row)."""
    ids = source["sample_id"].astype(str)
    group = source["group_id"].astype(str)
    frame = pd.DataFrame({
        "sample_id": ids, "source_key": source["source_key"].astype(str),
        "path": source["path"].astype(str), "member": source["member"].astype(str),
        "label": source["label"].astype(str),
        "supercategory": source["supercategory"].astype(str),
        "group_id": group.where(group != "", ids), "group_kind": source["group_kind"].astype(str),
        "frame_index": source["frame_index"].astype("int64"),
        "role": source["role"].astype(str),
        "width": _known(headers.width), "height": _known(headers.height),
        "bytes": _known(headers.size),
        "status": headers.status, "reason": headers.reason,
        "dropped_by": np.where(headers.status == OK, "", CATALOG).astype(object),
        "used": source["used"].astype(bool),
        "index_in_source": source["index_in_source"].astype("int64"),
    })
    frame["label_index"] = _label_indices(frame["label"], label_names)
    return frame[CATALOG_COLUMNS]


def _known(values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """An int64 column with -1 for unknown as a nullable Int64 column."""
    return pd.arrays.IntegerArray(values, values < 0)


def class_counts(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()}


def summarize_sizes(frame: pd.DataFrame) -> dict[str, float]:
    ok = frame.dropna(subset=["width", "height"])
    if ok.empty:
        return {}
    w, h = ok["width"].to_numpy(np.int64), ok["height"].to_numpy(np.int64)
    return {"min_width": int(w.min()), "max_width": int(w.max()), "min_height": int(h.min()),
            "max_height": int(h.max()), "total_bytes": int(frame["bytes"].fillna(0).sum())}
