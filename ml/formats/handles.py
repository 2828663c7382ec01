"""Typed handles to packed artifacts: paths and counts, never the data itself.

The prepare job's packing assets return these; the IO manager stores them as small JSON files
and hands them to downstream assets (training), which open what they need lazily. The torch
datasets accept them directly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Handle:
    """Base: JSON round trip by field names; `kind` names the concrete type in the JSON."""

    kind: ClassVar[str] = "handle"

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, **asdict(self)}, indent=1, default=str)

    @staticmethod
    def from_json(text: str) -> "Handle":
        doc = json.loads(text)
        cls = HANDLE_TYPES[doc.pop("kind")]
        names = {f.name for f in fields(cls)}
        return cls(**{k: _tupled(v) for k, v in doc.items() if k in names})


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    if isinstance(value, dict):
        return {k: _tupled(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class RecordIOHandle(Handle):
    """An insightface legacy-layout .rec/.idx/property triple."""

    kind: ClassVar[str] = "recordio"
    rec_path: str
    idx_path: str
    property_path: str
    num_images: int
    num_classes: int
    image_size: tuple[int, int]
    rec_sha256: str

    def open_index(self):
        from ml.formats.insightface_rec import open_face_rec
        return open_face_rec(Path(self.rec_path).parent)


@dataclass(frozen=True)
class TFRecordShardsHandle(Handle):
    """TFRecord shards per split, each with its DALI-style .idx."""

    kind: ClassVar[str] = "tfrecords"
    out_dir: str
    shards: dict[str, tuple[str, ...]]        # split -> shard paths in order
    records: dict[str, int]                   # split -> records
    num_classes: int
    sha256: str = ""                          # of every shard's bytes, in split and shard order

    def shard_paths(self, split: str) -> list[Path]:
        return [Path(p) for p in self.shards.get(split, ())]


@dataclass(frozen=True)
class H5StoreHandle(Handle):
    """A solo-learn layout HDF5 image store with sequence/frame metadata."""

    kind: ClassVar[str] = "h5_store"
    path: str
    num_images: int
    num_sequences: int
    num_classes: int
    sha256: str = ""                          # of the store's bytes


@dataclass(frozen=True)
class MemfileHandle(Handle):
    """Seed 002's validation memfile: images N x 3 x S x S plus issame and dataname per image."""

    kind: ClassVar[str] = "memfile"
    path: str
    shape: tuple[int, ...]
    dtype: str
    num_pairs: int
    sets: dict[str, int]                      # dataname -> code
    sha256: str = ""                          # of the images file's bytes

    def open(self) -> np.memmap:
        """The images, memory-mapped read-only."""
        from ml.formats.memfile import open_memfile
        return open_memfile(self.path, mode="r")

    def open_all(self):
        from ml.formats.insightface_bin import open_validation_memfile
        return open_validation_memfile(self.path)


@dataclass(frozen=True)
class CheckpointHandle(Handle):
    """A trained model: the checkpoint a training task wrote and the figures it reported."""

    kind: ClassVar[str] = "checkpoint"
    task: str
    checkpoint: str                           # a state_dict checkpoint (ml/train/checkpoint.py)
    out_dir: str                              # the run's folder: curves, events, summary
    summary: dict[str, Any]                   # the trainer's final summary (JSON scalars)


@dataclass(frozen=True)
class StoredHandle:
    """A handle with the file it was read from (the IO manager's `<asset>.handle.json`), for a
    consumer that passes the file on (a trainer's --input) instead of writing a copy of it."""

    path: Path
    handle: Handle


HANDLE_TYPES: dict[str, type[Handle]] = {
    cls.kind: cls for cls in (RecordIOHandle, TFRecordShardsHandle, H5StoreHandle, MemfileHandle,
                              CheckpointHandle)
}
