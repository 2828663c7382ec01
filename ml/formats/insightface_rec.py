"""insightface's RecordIO face datasets (`train.rec` + `train.idx` + `property`), both layouts.

- legacy (faces_emore / MS1M / face2rec2): record 0 has flag 2 and label [N+1, N+1+C]. Images
  are keys 1..N (flag 0, label = class index, id = key), then one identity record per class at
  keys N+1..N+C, each flag 2 with label [start, end): the image keys of that identity. `property`
  is "C,h,w\\n". insightface's MXFaceDataset detects it by record 0's flag > 0.
- RecBuilder (insightface.data.rec_builder): images at keys 0..N-1 (flag 0, label = class
  index, id = key), no record 0 and no identity records; `property` is "C,h,w\\nN\\n" with
  C = max label + 1; `train.meta` (a pickle) is not needed and never read.

An image's label is its header's label, or the first value of its label array when flag > 0
(what insightface does). Labels are read from the record headers only, one small pread per
record, without touching the image bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterable

import numpy as np

from ml.atomic import atomic_write_text
from ml.errors import DatasetError, FormatError, ImageError
from ml.file_bytes import read_file_bytes
from ml.formats.recordio import IRHeader, RecordIOReader, RecordIOWriter, header_bytes
from ml.publish import publish_dir
from ml.progress import Progress

LEGACY = "legacy"
RECBUILDER = "recbuilder"
REC_NAME, IDX_NAME, PROPERTY_NAME = "train.rec", "train.idx", "property"
FLOAT32_EXACT = 2 ** 24        # keys and labels are stored as float32: exact below this
MAX_CLASS_INDEX = 2 ** 31 - 1

FacePayload = bytes | str | os.PathLike


@dataclass(frozen=True)
class FaceProperty:
    """The `property` file: number of classes, image (height, width), image count (RecBuilder)."""

    num_classes: int
    image_size: tuple[int, int]
    num_images: int | None = None

    def to_text(self) -> str:
        text = f"{self.num_classes},{self.image_size[0]},{self.image_size[1]}\n"
        return text if self.num_images is None else text + f"{self.num_images}\n"


def read_property(path: str | os.PathLike) -> FaceProperty:
    """Parse a `property` file ("C,h,w" and, from RecBuilder, a second line "N")."""
    path = Path(path)
    raw = path.read_bytes()[:4096]
    try:
        lines = raw.decode("ascii").split()
        num_classes, height, width = (int(v) for v in lines[0].split(","))
        num_images = int(lines[1]) if len(lines) > 1 else None
        if len(lines) > 2 or min(num_classes, height, width, num_images or 0) < 0:
            raise ValueError("unexpected content")
    except (ValueError, IndexError):
        shown = raw[:40].decode("ascii", "backslashreplace")
        raise FormatError(path, 0, f"bad property file {shown!r}; expected "
                                   "'<num_classes>,<height>,<width>' and optionally a line "
                                   "'<num_images>'") from None
    return FaceProperty(num_classes, (height, width), num_images)


def face_rec_paths(location: str | os.PathLike) -> tuple[Path, Path, Path]:
    """(train.rec, train.idx, property) for a dataset folder, or for a .rec file given directly."""
    location = Path(location)
    if location.is_dir():
        return location / REC_NAME, location / IDX_NAME, location / PROPERTY_NAME
    return location, location.with_suffix(".idx"), location.parent / PROPERTY_NAME


def _open_reader(location: str | os.PathLike) -> RecordIOReader:
    rec_path, idx_path, _ = face_rec_paths(location)
    if not idx_path.is_file():
        raise FormatError(idx_path, None, "missing: insightface face datasets are read by key, "
                                          "so the .idx must sit beside the .rec")
    return RecordIOReader(rec_path, idx_path)


def _layout_of(reader: RecordIOReader) -> str:
    if 0 in reader and reader.read_header(0).flag > 0:
        return LEGACY
    return RECBUILDER


def detect_layout(location: str | os.PathLike) -> str:
    """LEGACY when record 0 is a header record (flag > 0), else RECBUILDER."""
    with _open_reader(location) as reader:
        return _layout_of(reader)


def _integral(values: np.ndarray, low: int, high: int) -> np.ndarray:
    """Mask of values that are finite integers in [low, high]."""
    with np.errstate(invalid="ignore"):
        return (np.isfinite(values) & (values == np.round(values)) & (values >= low)
                & (values <= high))


def _first_bad(mask: np.ndarray) -> int | None:
    bad = np.flatnonzero(~mask)
    return int(bad[0]) if len(bad) else None


@dataclass
class FaceRecIndex:
    """An opened face dataset: per-image keys and labels, classes, identity key ranges.

    `labels[i]` is the class of `image_keys[i]`. `identity_ranges` is an int64 array of
    [start, end) image-key ranges, one row per identity: the identity records of the legacy
    layout (row i = key N+1+i), or for RecBuilder the runs of equal labels when each class's
    images are consecutive keys (None otherwise).
    """

    root: Path
    layout: str
    reader: RecordIOReader
    image_keys: np.ndarray
    labels: np.ndarray
    num_classes: int
    image_size: tuple[int, int] | None
    identity_ranges: np.ndarray | None

    def __len__(self) -> int:
        return len(self.image_keys)

    def read_image(self, key: int) -> bytes:
        """The encoded image bytes (payload after the IRHeader) of image `key`."""
        return self.reader.read_unpacked(key)[1]

    def close(self) -> None:
        self.reader.close()


def _legacy_header_keys(reader: RecordIOReader) -> tuple[int, int]:
    """Record 0's [N+1, N+1+C] as ints, validated."""
    header = reader.read_header(0)
    values = np.atleast_1d(np.asarray(header.label, dtype=np.float64))[:2]
    if header.flag < 2 or not _integral(values, 1, FLOAT32_EXACT).all() or values[0] > values[1]:
        raise FormatError(reader.rec_path, reader.offset_of(0),
                          f"legacy header record 0 has label {header.label!r}; expected two "
                          "integers [N+1, N+1+num_identities]")
    if values[1] - 1 > len(reader.table):
        raise FormatError(reader.rec_path, reader.offset_of(0),
                          f"legacy header record 0 announces {int(values[1]) - 1} records after "
                          f"it but the index holds only {len(reader.table)} keys")
    return int(values[0]), int(values[1])


def _require_keys(reader: RecordIOReader, keys: np.ndarray, what: str) -> None:
    try:
        reader.table.offsets_of(keys)
    except KeyError as missing:
        raise FormatError(reader.idx_path, None, f"{what}, but key {missing.args[0]} is not in "
                                                 "the index") from None


def _image_labels(reader: RecordIOReader, keys: np.ndarray) -> np.ndarray:
    _, values = reader.read_labels(keys, width=1)
    labels = values[:, 0].astype(np.float64)
    bad = _first_bad(_integral(labels, 0, MAX_CLASS_INDEX))
    if bad is not None:
        key = int(keys[bad])
        raise FormatError(reader.rec_path, reader.offset_of(key),
                          f"image key {key} has label {labels[bad]!r}, not a class index")
    return labels.astype(np.int64)


def _legacy_identity_ranges(reader: RecordIOReader, first_identity: int,
                            end_identity: int) -> np.ndarray:
    identity_keys = np.arange(first_identity, end_identity, dtype=np.int64)
    _, values = reader.read_labels(identity_keys, width=2)
    ranges = values.astype(np.float64)
    valid = (_integral(ranges, 1, first_identity).all(axis=1) & (ranges[:, 0] <= ranges[:, 1]))
    bad = _first_bad(valid)
    if bad is not None:
        key = int(identity_keys[bad])
        raise FormatError(reader.rec_path, reader.offset_of(key),
                          f"identity record {key} has range {values[bad].tolist()}; expected "
                          f"[start, end) within image keys 1..{first_identity - 1}")
    return ranges.astype(np.int64)


def _label_runs(image_keys: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """[start, end) key ranges of equal-label runs, when keys are consecutive and each label
    forms a single run; else None."""
    if not len(image_keys) or np.any(np.diff(image_keys) != 1):
        return None
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    if len(np.unique(labels[starts])) != len(starts):
        return None
    ends = np.r_[starts[1:], len(labels)]
    return np.stack([image_keys[starts], image_keys[0] + ends], axis=1).astype(np.int64)


def _check_property(prop: FaceProperty, path: Path, labels: np.ndarray) -> None:
    if len(labels) and labels.max() >= prop.num_classes:
        raise FormatError(path, 0, f"says {prop.num_classes} classes but an image has label "
                                   f"{int(labels.max())}; the property file does not match "
                                   "train.rec")
    if prop.num_images is not None and prop.num_images != len(labels):
        raise FormatError(path, 0, f"says {prop.num_images} images but train.rec holds "
                                   f"{len(labels)}")


def open_face_rec(location: str | os.PathLike) -> FaceRecIndex:
    """Open an insightface face dataset folder (or its train.rec) and index it by header."""
    reader = _open_reader(location)
    try:
        layout = _layout_of(reader)
        if layout == LEGACY:
            first_identity, end_identity = _legacy_header_keys(reader)
            image_keys = np.arange(1, first_identity, dtype=np.int64)
            _require_keys(reader, np.r_[image_keys, np.arange(first_identity, end_identity)],
                          f"record 0 announces images 1..{first_identity - 1} and identities "
                          f"{first_identity}..{end_identity - 1}")
            labels = _image_labels(reader, image_keys)
            ranges = _legacy_identity_ranges(reader, first_identity, end_identity)
        else:
            image_keys = reader.keys.copy()
            labels = _image_labels(reader, image_keys)
            ranges = _label_runs(image_keys, labels)
        property_path = face_rec_paths(location)[2]
        prop = read_property(property_path) if property_path.is_file() else None
        if prop is not None:
            _check_property(prop, property_path, labels)
        num_classes = prop.num_classes if prop else int(labels.max()) + 1 if len(labels) else 0
        return FaceRecIndex(root=reader.rec_path.parent, layout=layout, reader=reader,
                            image_keys=image_keys, labels=labels, num_classes=num_classes,
                            image_size=prop.image_size if prop else None,
                            identity_ranges=ranges)
    except BaseException:
        reader.close()
        raise


# --------------------------------------------------------------------------------------------
# Writing the legacy layout


@dataclass(frozen=True)
class FaceRecSummary:
    """What write_insightface_legacy wrote. identity_labels[i] is the caller's label of the
    identity written as class i (identity record N+1+i)."""

    out_dir: Path
    num_images: int
    num_identities: int
    rec_bytes: int
    rec_sha256: str | None
    identity_labels: tuple[Hashable, ...]


def _group_by_identity(items: Iterable[tuple[FacePayload, Hashable]],
                       shuffle_seed: int | None) -> list[tuple[Hashable, list[FacePayload]]]:
    """Items grouped by label in first-appearance order; with a seed, identities and the
    images within each identity in a seeded random order."""
    groups: dict[Hashable, list[FacePayload]] = {}
    for payload, label in items:
        groups.setdefault(label, []).append(payload)
    grouped = list(groups.items())
    if shuffle_seed is None:
        return grouped
    rng = np.random.default_rng(shuffle_seed)
    shuffled = []
    for position in rng.permutation(len(grouped)).tolist():
        label, payloads = grouped[position]
        shuffled.append((label, [payloads[i] for i in rng.permutation(len(payloads)).tolist()]))
    return shuffled


def _payload_bytes(payload: FacePayload) -> bytes:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    try:
        return read_file_bytes(payload)
    except OSError as exc:
        raise ImageError(str(payload), "cannot be read", exc.strerror or str(exc)) from exc


def write_insightface_legacy(out_dir: str | os.PathLike,
                             items: Iterable[tuple[FacePayload, Hashable]],
                             shuffle_seed: int | None = None,
                             image_size: tuple[int, int] = (112, 112),
                             progress: Progress | None = None,
                             sha256: bool = True,
                             keep_previous: bool = False) -> FaceRecSummary:
    """Write `out_dir` = train.rec + train.idx + property in the legacy layout.

    `items` are (payload, label) pairs; a payload is encoded image bytes or the path of an
    encoded image file (read when written, so a large set need not sit in memory). Items are
    grouped by label (first-appearance order, or shuffled with `shuffle_seed`); identity i is
    written with class index i. `out_dir` is published as a whole (ml/publish.py: a version
    folder that `out_dir` points at; the summary's `out_dir` is that version, and
    `keep_previous` keeps the older versions until a handle is recorded). `sha256=False`
    skips the checksum (hashing runs beside the writes but costs CPU on large sets).
    """
    groups = _group_by_identity(items, shuffle_seed)
    num_images = sum(len(payloads) for _, payloads in groups)
    first_identity = num_images + 1
    end_identity = first_identity + len(groups)
    if end_identity > FLOAT32_EXACT:
        raise DatasetError(f"{num_images} images and {len(groups)} identities: the legacy "
                           f"layout stores keys as float32, exact only below {FLOAT32_EXACT}")
    if progress is not None:
        progress.total = num_images
    with publish_dir(out_dir, keep_previous=keep_previous) as build:
        folder = build.path
        with RecordIOWriter(folder / REC_NAME, folder / IDX_NAME, sha256=sha256) as writer:
            writer.write(0, header_bytes(IRHeader(0, [first_identity, end_identity], 0, 0)))
            key = 1
            ranges = []
            for class_index, (_, payloads) in enumerate(groups):
                start = key
                for payload in payloads:
                    writer.write_packed(key, IRHeader(0, class_index, key, 0),
                                        _payload_bytes(payload))
                    key += 1
                    if progress is not None:
                        progress.advance()
                ranges.append((start, key))
            for identity_key, key_range in enumerate(ranges, start=first_identity):
                writer.write(identity_key, header_bytes(IRHeader(0, list(key_range), 0, 0)))
        atomic_write_text(folder / PROPERTY_NAME,
                          FaceProperty(len(groups), tuple(image_size)).to_text())
        rec_bytes = writer.position
    if progress is not None:
        progress.finish()
    return FaceRecSummary(out_dir=build.published, num_images=num_images,
                          num_identities=len(groups), rec_bytes=rec_bytes,
                          rec_sha256=writer.sha256,
                          identity_labels=tuple(label for label, _ in groups))
