"""Packing split manifests into the formats training reads: RecordIO (insightface legacy
layout), TFRecord shards, an HDF5 image store and a validation memfile of verification pairs.

Every function reads the already-resized files named in the manifest's `file` column and
passes their encoded bytes through (no re-encode), publishes its folder as one unit
(ml/publish.py) and returns a handle naming the published version. Older versions stay until
the handle is recorded: then `ml.publish.prune_for(handle)` removes them (the handle IO manager
does this).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Optional

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from pydantic import Field, model_validator

from ml.checksums import files_sha256
from ml.columns import text_column
from ml.errors import DatasetError
from ml.file_bytes import read_file_bytes
from ml.formats.example_proto import make_image_example_parts
from ml.formats.h5_store import H5Item, write_h5_store
from ml.formats.handles import H5StoreHandle, MemfileHandle, RecordIOHandle, TFRecordShardsHandle
from ml.formats.insightface_bin import NORMALIZATION, build_validation_memfile
from ml.formats.insightface_rec import write_insightface_legacy
from ml.formats.tfrecord import shuffled_order, write_shards
from ml.options import Float, Int, Options
from ml.pairs import make_verification_pairs
from ml.progress import ProgressFactory, start_progress
from ml.publish import publish_dir


class RecordioOptions(Options):
    """`formats.recordio`: the train split as MXNet RecordIO (insightface's legacy layout)."""

    shuffle_seed: Int = Field(0, description="Seed of the order the records are written in")


class TfrecordsOptions(Options):
    """`formats.tfrecords`: every split as shuffled TFRecord shards with DALI-style indexes."""

    target_shard_mb: Annotated[Float, Field(gt=0)] = Field(64.0, description="Size a shard file grows to before the next begins, in MiB")
    seed: Int = Field(0, description="Seed of the record order")


class H5StoreOptions(Options):
    """`formats.h5_store`: object sequences as an HDF5 image store (solo-learn's layout)."""


class ValidationMemfileOptions(Options):
    """`formats.validation_memfile`: verification pairs of the val split (seed 002's memfile)."""

    pairs: Annotated[Int, Field(ge=1)] = Field(600, description="Same- and different-identity pairs, balanced, in 10 folds")
    seed: Int = Field(0, description="Seed of the pair draw")
    dtype: Literal[tuple(NORMALIZATION)] = Field("float32", description="`float32` (normalised to [-1, 1], as insightface's evaluation) or `uint8` (raw RGB)")
    image_size: Annotated[Int, Field(ge=1)] = Field(112, description="Side of the square images, in pixels")


class FormatsOptions(Options):
    """The dataset's `formats:` section: which packed formats to build (a key, even with no
    options under it, declares one) and their options."""

    recordio: Optional[RecordioOptions] = Field(None, description="The train split as MXNet RecordIO")
    tfrecords: Optional[TfrecordsOptions] = Field(None, description="Every split as TFRecord shards")
    h5_store: Optional[H5StoreOptions] = Field(None, description="Object sequences as an HDF5 image store")
    validation_memfile: Optional[ValidationMemfileOptions] = Field(None, description="Verification pairs of the val split as a memfile")

    SECTION: ClassVar[str] = "formats"

    @model_validator(mode="before")
    @classmethod
    def _declared_without_options(cls, values: Any) -> Any:
        """`recordio:` with nothing under it declares the format with its defaults."""
        if isinstance(values, dict):
            return {k: {} if v is None else v for k, v in values.items()}
        return values

    @property
    def declared(self) -> tuple[str, ...]:
        """The formats the dataset packs, in the section's order of fields."""
        return tuple(name for name in type(self).model_fields if getattr(self, name) is not None)

    def __contains__(self, name: str) -> bool:
        return name in self.declared


class FileBytes(Sequence):
    """A sequence of files' bytes read on access, so a large set never sits in memory."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        return read_file_bytes(self.paths[i])


# The split-manifest columns the packers read (a packing step loads only these).
SPLIT_COLUMNS = ("split", "file", "label_index", "label", "width", "height", "source_key",
                 "group_kind", "group_id", "frame_index")
RECORDIO_COLUMNS = ("file", "label_index", "height", "width")   # what pack_recordio reads


def _require(frame: pd.DataFrame, what: str) -> None:
    if frame.empty:
        raise DatasetError(f"{what}: the split manifest has no rows to pack")


def pack_recordio(train: pd.DataFrame, out_dir: Path, *, shuffle_seed: int | None = None,
                  progress_factory: ProgressFactory | None = None) -> RecordIOHandle:
    """The train split as insightface's legacy layout (record 0 header, images 1..N, identity
    records) + property, with labels re-indexed 0..C-1 by identity."""
    _require(train, "recordio")
    size = (int(train["height"].iloc[0]), int(train["width"].iloc[0]))
    items = ((f, int(l)) for f, l in zip(train["file"], train["label_index"]))
    progress = (start_progress(len(train), "recordio", factory=progress_factory)
                if progress_factory is not None else None)
    summary = write_insightface_legacy(out_dir, items, shuffle_seed=shuffle_seed,
                                       image_size=size, progress=progress, keep_previous=True)
    folder = summary.out_dir
    return RecordIOHandle(rec_path=str(folder / "train.rec"), idx_path=str(folder / "train.idx"),
                          property_path=str(folder / "property"),
                          num_images=summary.num_images, num_classes=summary.num_identities,
                          image_size=size, rec_sha256=summary.rec_sha256)


class ImageExampleRows:
    """Rows of a split manifest as tf.train.Example records with the standard image keys:
    `record(i)` reads the file of the i-th row of `order` (positions in `rows`; default: every
    row in table order) and returns its Example as pieces (the image bytes uncopied). The
    columns are taken out of the DataFrame once, only at those positions, as Arrow text and
    numpy numbers (no Python object per row: a million rows held as lists of str cost ~300
    MB), and laid out in `order`, so a record costs a file read, the encoding and two text
    lookups, and the records are read front to back: reading a million rows' columns at
    shuffled positions instead missed the CPU caches on every column (1-2 us per record more
    than in table order at 1M, none at 100k)."""

    def __init__(self, rows: pd.DataFrame, order: Sequence[int] | None = None):
        at = None if order is None else np.asarray(order, dtype=np.int64)

        def column(name: str) -> pd.Series:
            return rows[name] if at is None else rows[name].iloc[at]

        self.files = text_column(column("file"))
        self.names = text_column(column("source_key"))
        self.labels = column("label_index").to_numpy(np.int64)
        self.heights = column("height").to_numpy(np.int64)
        self.widths = column("width").to_numpy(np.int64)
        codes, texts = pd.factorize(column("label").astype(str))
        self.text_codes, self.texts = codes, [str(t) for t in texts]
        self.png = pc.ends_with(pc.utf8_lower(self.files), ".png").to_numpy(zero_copy_only=False)

    def __len__(self) -> int:
        return len(self.files)

    def record(self, i: int) -> list[bytes]:
        return make_image_example_parts(read_file_bytes(self.files[i].as_py()),
                                        label=int(self.labels[i]), height=int(self.heights[i]),
                                        width=int(self.widths[i]),
                                        text=self.texts[self.text_codes[i]],
                                        format="png" if self.png[i] else "jpeg",
                                        filename=self.names[i].as_py())


def pack_tfrecords(frame: pd.DataFrame, out_dir: Path, *, target_shard_bytes: int,
                   seed: int | None = 0,
                   progress_factory: ProgressFactory | None = None) -> TFRecordShardsHandle:
    """Every split as shuffled TFRecord shards of tf.train.Example with the standard image keys.
    No per-shard sha256 is computed while writing; the handle carries one checksum over all
    shards (what training's resume fingerprint and the asset's metadata use)."""
    _require(frame, "tfrecords")
    paths: dict[str, list[Path]] = {}
    records: dict[str, int] = {}
    codes, names = pd.factorize(frame["split"], sort=True)      # rows without a split: -1
    with publish_dir(out_dir, keep_previous=True) as build:
        for code, split in enumerate(names):
            positions = np.flatnonzero(codes == code)     # the split's rows, not a copy of them
            examples = ImageExampleRows(frame, positions[shuffled_order(len(positions), seed)])
            progress = start_progress(len(examples), f"{split} TFRecord shards",
                                      factory=progress_factory)
            summary = write_shards(range(len(examples)), examples.record, build.path, str(split),
                                   target_shard_bytes, seed=None, progress=progress, sha256=False)
            paths[str(split)] = summary.paths
            records[str(split)] = summary.total_records
    shards = {split: tuple(str(build.rebase(p)) for p in ps) for split, ps in paths.items()}
    return TFRecordShardsHandle(out_dir=str(build.published), shards=shards, records=records,
                                num_classes=int(frame["label_index"].nunique()),
                                sha256=files_sha256([p for ps in shards.values() for p in ps]))


def pack_h5_store(frame: pd.DataFrame, path: Path, *,
                  progress_factory: ProgressFactory | None = None) -> H5StoreHandle:
    """Sequences (group_kind 'sequence') as a solo-learn HDF5 store (metadata in a sidecar file)."""
    seq = frame.loc[frame["group_kind"] == "sequence"]
    _require(seq, "h5_store")
    seq = seq.sort_values(["label", "group_id", "frame_index"])

    def items():
        for row in seq.itertuples(index=False):
            obj = str(row.group_id).split("/", 1)[-1]
            yield H5Item(class_name=str(row.label), object_id=obj, frame=int(row.frame_index),
                         data=read_file_bytes(row.file), ext=os.path.splitext(row.file)[1][1:] or "jpg")

    with publish_dir(path.parent, keep_previous=True) as build:
        summary = write_h5_store(build.path / path.name, items(), total=len(seq),
                                 progress_factory=progress_factory)
    store = build.published / path.name
    return H5StoreHandle(path=str(store), num_images=summary.items,
                         num_sequences=summary.sequences, num_classes=summary.classes,
                         sha256=files_sha256([str(store)]))


def build_val_memfile(val: pd.DataFrame, path: Path, *, set_name: str, n_pairs: int, seed: int,
                      dtype: str = "float32", image_size: int = 112,
                      progress_factory: ProgressFactory | None = None) -> MemfileHandle:
    """Balanced same/different-identity pairs of the val split, in 10 contiguous folds, as
    seed 002's validation memfile (images, issame, dataname)."""
    _require(val, "validation_memfile")
    labels = val["label_index"].to_numpy(np.int64)
    pairs = make_verification_pairs(labels, n_pairs=n_pairs, seed=seed)
    files = val["file"].tolist()
    order = [files[i] for pair in pairs.pairs for i in pair]
    with publish_dir(path.parent, keep_previous=True) as build:
        summary = build_validation_memfile(
            build.path / path.name, {set_name: (FileBytes(order), pairs.issame.tolist())},
            image_size=image_size, dtype=dtype, progress_factory=progress_factory)
    images = build.published / path.name
    return MemfileHandle(path=str(images), sha256=summary.images.sha256,
                         shape=tuple(summary.images.shape),
                         dtype=summary.dtype, num_pairs=len(pairs),
                         sets={s.name: s.code for s in summary.sets})
