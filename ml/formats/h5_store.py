"""HDF5 image store (seed 001, solo-learn layout) with sequence metadata, and its reader.

Layout (readable by solo-learn's H5 dataset and by h5py alone):
- `/<class>/<object>_<frame:03d>.<ext>`: one 1-D uint8 dataset per image holding the encoded
  file bytes (JPEG/PNG) unchanged, contiguous, uncompressed (as golden sequences.h5).
- `<store>.meta.h5`, a sidecar file beside the store (written by write_h5_store; optional for
  readers), holding at its root one row per image, sorted by (class, object, frame) so each
  sequence's frames are contiguous. It is a separate file because solo-learn's H5Dataset takes
  every top-level name of the store as a class: a `/_meta` group inside the store (what stores
  written before the sidecar hold, still read) became class 0 there, with undecodable "images"
  and every real label shifted by one. Datasets of the sidecar:
    key       vlen UTF-8 str  (n,)    member name, e.g. "bottle/obj0_003.jpg"
    class     int32 (n,)              index into classes
    sequence  int32 (n,)              index into sequences
    frame     int32 (n,)              frame number parsed from the name (-1 if none)
    sha256    S64 (n,)                hex sha256 of the member's bytes
    nbytes    int64 (n,)              member size in bytes
    offset    int64 (n,)              byte offset of the member's data in the file (optional:
                                      stores written before it existed lack it)
    classes   vlen UTF-8 str  (C,)    sorted class names
    sequences vlen UTF-8 str  (S,)    "class/object", in (class, object) order
    sequence_start int64 (S+1,)       rows of sequence s are sequence_start[s]:sequence_start[s+1]
  attributes format="imageds.h5store", version=1, store_bytes (the store's size: a sidecar
  that does not match its store is ignored). Top-level names starting with "_" are never
  classes.
Without metadata (e.g. files written by other tools) the index is inferred from the member
names; there are no stored checksums then.

Reading is seed 001 done right: no retries, no SWMR, no dummy samples. H5StoreReader opens the
file lazily, read-only, once per process and thread: the handle is remembered with os.getpid()
in a threading.local, so a forked DataLoader worker or another thread opens its own handle and
never uses one inherited from the parent. A missing member or unreadable file is a FormatError.

Fast reads: a member stored contiguous and unfiltered (every member this module writes) is a
plain byte span of the file, so the reader takes it with one pread on its own read-only file
descriptor (about 2 us) instead of h5py's lookup and read (about 115 us for a face JPEG). The
spans come from the metadata's `offset`, or are looked up through h5py once per member and remembered.
The descriptor (ml.formats.file_access.PreadFile) is opened once per process, and only if the
file is still the one that was indexed (same inode, size and mtime); otherwise FormatError.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sized

import h5py
import numpy as np

from ml.atomic import atomic_path
from ml.errors import DatasetError, FormatError
from ml.formats.file_access import FileIdentity, PreadFile, file_identity
from ml.progress import ProgressFactory, start_progress

META_GROUP = "_meta"            # inside stores written before the sidecar existed
META_SUFFIX = ".meta.h5"
FORMAT_NAME = "imageds.h5store"
FORMAT_VERSION = 1
MEMBER_RE = re.compile(r"^(?P<object>.+)_(?P<frame>\d+)\.(?P<ext>[A-Za-z0-9]+)$")
NAME_RE = re.compile(r"^[^/\x00]+$")
_STR = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class H5Item:
    """One image to store: its class, object (sequence) and frame, and its encoded bytes."""

    class_name: str
    object_id: str
    frame: int
    data: bytes
    ext: str = "jpg"

    @property
    def key(self) -> str:
        return member_key(self.class_name, self.object_id, self.frame, self.ext)


def member_key(class_name: str, object_id: str, frame: int, ext: str = "jpg") -> str:
    """The solo-learn member name `<class>/<object>_<frame:03d>.<ext>`."""
    return f"{class_name}/{object_id}_{frame:03d}.{ext}"


def parse_member_key(key: str) -> tuple[str, str, int]:
    """(class, sequence "class/object", frame) from a member name; frame -1 if it has none."""
    class_name, name = posixpath.split(key)
    m = MEMBER_RE.match(name)
    obj, frame = (m["object"], int(m["frame"])) if m else (posixpath.splitext(name)[0], -1)
    return class_name, f"{class_name}/{obj}" if class_name else obj, frame


@dataclass(frozen=True)
class H5StoreIndex:
    """Every image of a store in (class, sequence, frame) order, with sequence boundaries."""

    path: Path
    keys: list[str]
    classes: list[str]
    class_index: np.ndarray      # (n,) int32
    sequences: list[str]
    sequence: np.ndarray         # (n,) int32
    frame: np.ndarray            # (n,) int32
    sequence_start: np.ndarray   # (S+1,) int64
    sha256: list[str] | None     # from the metadata; None when inferred from names
    offsets: np.ndarray | None = None   # (n,) int64 data offsets from the metadata, -1 unknown
    nbytes: np.ndarray | None = None    # (n,) int64 member sizes from the metadata
    file_id: FileIdentity | None = None      # the indexed file's (dev, inode, size, mtime_ns)

    def __len__(self) -> int:
        return len(self.keys)

    def sequence_rows(self, s: int) -> range:
        """Rows (sample indices) of sequence s, in frame order."""
        return range(int(self.sequence_start[s]), int(self.sequence_start[s + 1]))


@dataclass(frozen=True)
class H5StoreSummary:
    """What write_h5_store wrote."""

    path: Path
    items: int
    sequences: int
    classes: int
    payload_bytes: int
    file_bytes: int


# ----------------------------------------------------------------------------------- writing

def _check_item(item: H5Item, seen: set[str]) -> str:
    for what, value in (("class", item.class_name), ("object", item.object_id)):
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise DatasetError(f"h5 store item {value!r}: {what} name must be non-empty text "
                               "without '/'")
    if item.class_name.startswith("_"):
        raise DatasetError(f"h5 store class {item.class_name!r}: names starting with '_' are "
                           "reserved for store metadata; rename the class")
    if not re.fullmatch(r"[A-Za-z0-9]+", item.ext) or not 0 <= item.frame < 2**31:
        raise DatasetError(f"h5 store item {item.key!r}: extension must be alphanumeric and "
                           "frame a non-negative int32")
    if not item.data:
        raise DatasetError(f"h5 store item {item.key!r}: no image bytes")
    key = item.key
    if key in seen:
        raise DatasetError(f"h5 store item {key!r} given twice; each (class, object, frame) "
                           "must be unique")
    seen.add(key)
    return key


def write_h5_store(path: str | os.PathLike, items: Iterable[H5Item], *,
                   total: int | None = None,
                   emit: Callable[[str], None] | None = None,
                   progress_factory: ProgressFactory | None = None) -> H5StoreSummary:
    """Write items (streamed one at a time) as a solo-learn HDF5 store plus its sidecar metadata
    (`<store>.meta.h5`), each file atomically.
    Progress is logged through `emit`, or reported by `progress_factory(total, what)`."""
    path = Path(path)
    if total is None and isinstance(items, Sized):
        total = len(items)
    progress = start_progress(total or 0, "h5 store images", emit, progress_factory)
    rows: list[tuple[str, str, int, str, str, int, int]] = []
    seen: set[str] = set()
    try:
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as h5:
                for item in items:
                    key = _check_item(item, seen)
                    member = h5.create_dataset(key, data=np.frombuffer(bytes(item.data), np.uint8))
                    rows.append((item.class_name, item.object_id, item.frame, key,
                                 hashlib.sha256(item.data).hexdigest(), len(item.data),
                                 _data_offset(h5, member)))
                    progress.advance()
            with atomic_path(meta_path_for(path)) as meta_tmp, h5py.File(meta_tmp, "w") as meta:
                _write_meta(meta, sorted(rows), store_bytes=tmp.stat().st_size)
    except OSError as exc:
        raise DatasetError(f"{path}: writing the HDF5 store failed ({exc})") from None
    progress.finish()
    return H5StoreSummary(path, len(rows), len({(r[0], r[1]) for r in rows}),
                          len({r[0] for r in rows}), sum(r[5] for r in rows),
                          path.stat().st_size)


def _data_offset(h5: h5py.File, member: h5py.Dataset) -> int:
    """Where a member's bytes start in the file, or -1 when they are not one plain span
    (chunked, compact or filtered storage, or not a 1-D uint8 dataset)."""
    ident = member.id
    plist = ident.get_create_plist()
    if (member.dtype != np.uint8 or member.ndim != 1 or plist.get_layout() != h5py.h5d.CONTIGUOUS
            or plist.get_nfilters() != 0):
        return -1
    offset = ident.get_offset()
    if offset is None or ident.get_storage_size() != member.shape[0]:
        return -1
    return int(offset) + int(h5.id.get_create_plist().get_userblock())


def meta_path_for(path: str | os.PathLike) -> Path:
    """The sidecar metadata file of a store: `<store>.meta.h5`."""
    path = Path(path)
    return path.with_name(path.name + META_SUFFIX)


def _write_meta(meta: h5py.Group, rows: list[tuple[str, str, int, str, str, int, int]], *,
                store_bytes: int) -> None:
    classes = sorted({r[0] for r in rows})
    sequences = list(dict.fromkeys(f"{r[0]}/{r[1]}" for r in rows))   # rows are sorted
    class_id = {c: i for i, c in enumerate(classes)}
    seq_id = {s: i for i, s in enumerate(sequences)}
    sequence = np.array([seq_id[f"{r[0]}/{r[1]}"] for r in rows], np.int32)
    meta.attrs["format"] = FORMAT_NAME
    meta.attrs["version"] = FORMAT_VERSION
    meta.attrs["store_bytes"] = int(store_bytes)
    meta.create_dataset("key", data=[r[3] for r in rows], dtype=_STR)
    meta.create_dataset("class", data=np.array([class_id[r[0]] for r in rows], np.int32))
    meta.create_dataset("sequence", data=sequence)
    meta.create_dataset("frame", data=np.array([r[2] for r in rows], np.int32))
    meta.create_dataset("sha256", data=np.array([r[4] for r in rows], "S64"))
    meta.create_dataset("nbytes", data=np.array([r[5] for r in rows], np.int64))
    meta.create_dataset("offset", data=np.array([r[6] for r in rows], np.int64))
    meta.create_dataset("classes", data=classes, dtype=_STR)
    meta.create_dataset("sequences", data=sequences, dtype=_STR)
    meta.create_dataset("sequence_start", data=_starts(sequence, len(sequences)))


def _starts(sequence: np.ndarray, n_sequences: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.bincount(sequence, minlength=n_sequences))]
                          ).astype(np.int64)


# ----------------------------------------------------------------------------------- reading

def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise FormatError(path, None, "no such HDF5 store") from None
    except OSError as exc:
        raise FormatError(path, None, f"not a readable HDF5 file ({exc})") from None


def index_h5_store(path: str | os.PathLike) -> H5StoreIndex:
    """List a store's images from its sidecar metadata (or an older store's `/_meta`), or from
    the member names when there is none."""
    path = Path(path)
    with _open_h5(path) as h5:
        file_id = file_identity(os.stat(path))
        try:
            sidecar = _sidecar_for(path, size=file_id[2])
            if sidecar is not None:
                with sidecar:
                    index = _index_from_meta(path, sidecar)
            elif META_GROUP in h5:
                index = _index_from_meta(path, h5[META_GROUP])
            else:
                index = _index_from_names(path, h5)
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            # RuntimeError: h5py's "Object visitation failed" on corrupt metadata
            raise FormatError(path, None, f"cannot read the store's index ({exc}); the file's "
                              "HDF5 metadata is damaged: rewrite or re-copy the store") from None
    if index.offsets is not None:
        _check_spans(path, index, size=file_id[2])
    return dataclasses.replace(index, file_id=file_id)


def _sidecar_for(path: Path, size: int) -> h5py.File | None:
    """The store's sidecar metadata, open, when there is one written for this very store."""
    meta_path = meta_path_for(path)
    if not meta_path.is_file():
        return None
    meta = _open_h5(meta_path)
    if meta.attrs.get("format") != FORMAT_NAME or int(meta.attrs.get("store_bytes", -1)) != size:
        meta.close()          # another tool rewrote the store: its names are the truth now
        return None
    return meta


def _check_spans(path: Path, index: H5StoreIndex, size: int) -> None:
    """Every span listed in the metadata lies inside the file (a bad one is a FormatError)."""
    offsets, nbytes = index.offsets, index.nbytes
    bad = np.flatnonzero((offsets >= 0) & ((nbytes < 0) | (offsets + nbytes > size)))
    if len(bad):
        i = int(bad[0])
        raise FormatError(path, int(offsets[i]), f"metadata offset of member "
                          f"{index.keys[i]!r} ({int(nbytes[i])} bytes) points past the end of the "
                          f"file ({size} bytes); rewrite the store")



def _index_from_meta(path: Path, meta: h5py.Group) -> H5StoreIndex:
    keys = list(meta["key"].asstr()[()])
    classes = list(meta["classes"].asstr()[()])
    sequences = list(meta["sequences"].asstr()[()])
    class_index, sequence, frame = (meta[k][()].astype(np.int32) for k in
                                    ("class", "sequence", "frame"))
    sha = [s.decode("ascii") for s in meta["sha256"][()]]
    starts = meta["sequence_start"][()].astype(np.int64)
    n = len(keys)
    consistent = (len(class_index) == len(sequence) == len(frame) == len(sha) == n
                  and (n == 0 or (0 <= class_index.min() and class_index.max() < len(classes)
                                  and 0 <= sequence.min() and sequence.max() < len(sequences)))
                  and np.array_equal(starts, _starts(sequence, len(sequences)))
                  and bool(np.all(np.diff(sequence) >= 0)))
    offsets = nbytes = None
    if "offset" in meta and "nbytes" in meta:
        offsets, nbytes = meta["offset"][()].astype(np.int64), meta["nbytes"][()].astype(np.int64)
        consistent = consistent and len(offsets) == len(nbytes) == n
    if not consistent:
        raise FormatError(path, None, f"metadata arrays ({meta.file.filename}) disagree with each other (lengths, "
                          "index ranges or sequence order); rewrite the store")
    return H5StoreIndex(path, keys, classes, class_index, sequences, sequence, frame, starts, sha,
                        offsets, nbytes)


def _image_members(h5: h5py.File) -> list[str]:
    keys: list[str] = []

    def visit(name: str, obj: object) -> None:
        if (isinstance(obj, h5py.Dataset) and obj.dtype == np.uint8 and obj.ndim == 1
                and not name.split("/", 1)[0].startswith("_")):
            keys.append(name)

    h5.visititems(visit)
    return keys


def _index_from_names(path: Path, h5: h5py.File) -> H5StoreIndex:
    members = _image_members(h5)
    if not members or any("/" not in k for k in members):
        top = sorted(h5.keys())[:5]
        raise FormatError(path, None, "not an image store in the expected layout: one group per "
                          "class holding 1-D uint8 datasets of encoded images named "
                          f"<object>_<frame>.<ext> (/<class>/<object>_<frame>.jpg); found "
                          f"{len(members)} such datasets{' at the top level' if members else ''} "
                          f"and top-level names {top}")
    parsed = sorted((*parse_member_key(k), k) for k in members)
    classes = sorted({p[0] for p in parsed})
    sequences = list(dict.fromkeys(p[1] for p in parsed))
    class_id = {c: i for i, c in enumerate(classes)}
    seq_id = {s: i for i, s in enumerate(sequences)}
    sequence = np.array([seq_id[p[1]] for p in parsed], np.int32)
    return H5StoreIndex(
        path, [p[3] for p in parsed], classes,
        np.array([class_id[p[0]] for p in parsed], np.int32), sequences, sequence,
        np.array([p[2] for p in parsed], np.int32), _starts(sequence, len(sequences)), None)


class H5StoreReader:
    """Reads members of one store: byte spans through a descriptor opened once per process,
    everything else through a lazily opened read-only h5py handle per process and thread."""

    def __init__(self, path: str | os.PathLike, index: H5StoreIndex | None = None):
        self.path = Path(path)
        self.index = index if index is not None else index_h5_store(self.path)
        self._local = threading.local()
        self._spans: dict[int, tuple[int, int] | None] = {}   # looked up through h5py
        self._file = PreadFile(self.path, "HDF5 store", self.index.file_id)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_local"]          # handles never travel to another process
        state["_spans"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def handle(self) -> h5py.File:
        """This process's and thread's handle, opened on first use (again after a fork)."""
        local, pid = self._local, os.getpid()
        if getattr(local, "pid", None) != pid:
            local.file = _open_h5(self.path)   # an inherited handle is dropped, never used
            local.pid = pid
        return local.file

    def span(self, i: int) -> tuple[int, int] | None:
        """(offset, size) of sample i's bytes in the file, or None when they are not one plain
        span (then read() goes through h5py)."""
        index = self.index
        if index.offsets is not None and index.offsets[i] >= 0:
            return int(index.offsets[i]), int(index.nbytes[i])
        if i not in self._spans:
            member = self._member(index.keys[i])
            offset = _data_offset(self.handle(), member)
            self._spans[i] = None if offset < 0 else (offset, int(member.shape[0]))
        return self._spans[i]

    def read(self, i: int) -> np.ndarray:
        """The encoded bytes of sample i as a 1-D uint8 array."""
        span = self.span(i) if self.index.file_id is not None else None
        if span is not None:
            return self._read_span(self.index.keys[i], *span)
        key = self.index.keys[i]
        try:
            data = self._member(key)[()]
        except OSError as exc:
            raise FormatError(self.path, None, f"cannot read member {key!r} ({exc})") from None
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1):
            raise FormatError(self.path, None, f"member {key!r} is not a 1-D uint8 dataset")
        return data

    def _member(self, key: str) -> h5py.Dataset:
        try:
            member = self.handle()[key]
        except KeyError:
            raise FormatError(self.path, None, f"member {key!r} listed in the index is missing; "
                              "the store changed after it was indexed") from None
        if not isinstance(member, h5py.Dataset):
            raise FormatError(self.path, None, f"member {key!r} is not a dataset")
        return member

    def _read_span(self, key: str, offset: int, size: int) -> np.ndarray:
        try:
            return self._file.pread_array(size, offset)
        except OSError as exc:
            raise FormatError(self.path, offset, f"cannot read member {key!r} ({exc})") from None

    def close(self) -> None:
        """Close this thread's handle and the descriptor (those this process opened)."""
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            local.file.close()
        local.__dict__.clear()
        self._file.close()


class H5StoreBytesDataset:
    """A map-style dataset of (encoded bytes as a uint8 array, index): DataLoader-ready, picklable
    for spawn workers, decoding left to later stages."""

    def __init__(self, path: str | os.PathLike):
        self.reader = H5StoreReader(path)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.reader.read(i), i
