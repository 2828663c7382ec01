"""TFRecordStream: an IterableDataset over TFRecord shards of tf.train.Example images.

Work is split across DataLoader workers AND distributed ranks so that, per epoch, every record
is yielded by exactly one worker of one rank:
- with at least world_size x num_workers shards, ml.formats.tfrecord.assign_shards gives each
  (rank, worker) a disjoint set of whole shards (permuted per (seed, epoch) when shuffling);
- with fewer shards, every (rank, worker) reads all shards and keeps every G-th record (G =
  world_size x num_workers), so no worker sits idle but each reads all the bytes: write at
  least G shards for large data.
Ranks may receive different record counts (whole shards differ in size); a DDP loop must cope
(e.g. stop at the smallest count, or torch's Join).

Rank and world size come from the arguments or, when absent, from torch.distributed in the
process that builds the stream (workers cannot ask it). Shuffling uses a buffer of
`shuffle_buffer` records seeded by (seed, epoch, rank, worker): call `set_epoch(epoch)` before
each epoch's iterator is created (DataLoader workers get a fresh copy of the stream per epoch
unless persistent_workers=True, which would freeze the epoch).

Items: (image, label) through the usual pipeline (decoded RGB -> swap -> augmenter -> transform),
or (image, label, mask) when the transform yields a mask. The label is `image/class/label`; a
record without one is a FormatError naming the shard and byte offset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TypeVar

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from ml.augmenter import Augmenter
from ml.datasets.pipeline import ImagePipeline, Transform, decode_bytes
from ml.errors import ConfigError, FormatError
from ml.formats.example_proto import IMAGE_LABEL, ImageExample, parse_image_example
from ml.formats.handles import TFRecordShardsHandle
from ml.formats.tfrecord import HEADER_BYTES, assign_shards, find_shards, iter_record_spans
from ml.samplers import resolve_replicas

T = TypeVar("T")
Located = tuple[str, int, bytes]          # (shard path, byte offset, record data)


def resolve_shards(source: TFRecordShardsHandle | str | os.PathLike | Sequence[str | os.PathLike],
                   split: str) -> list[str]:
    """Shard paths from a handle (its `split`), a folder (the split's complete shard set), one
    .tfrecord file, or a list of files."""
    if isinstance(source, TFRecordShardsHandle):
        paths = [str(p) for p in source.shard_paths(split)]
        if not paths:
            raise ConfigError(f"TFRecord handle has no shards for split {split!r}; it has "
                              f"{sorted(source.shards)}")
        return paths
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return [str(p) for p in find_shards(path, split)] if path.is_dir() else [str(path)]
    paths = [str(p) for p in source]
    if not paths:
        raise ConfigError("TFRecordStream: the list of shards is empty")
    return paths


def shuffle_buffered(items: Iterable[T], buffer_size: int, rng: np.random.Generator) -> Iterator[T]:
    """Items in a random order from a sliding buffer of `buffer_size` (tf.data's shuffle):
    each item is yielded exactly once."""
    buffer: list[T] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        slot = int(rng.integers(buffer_size))
        yield buffer[slot]
        buffer[slot] = item
    for slot in rng.permutation(len(buffer)).tolist():
        yield buffer[slot]


class TFRecordStream(IterableDataset):
    """Decoded image examples streamed from shards; see the module docstring."""

    def __init__(self, source: TFRecordShardsHandle | str | os.PathLike | Sequence[str | os.PathLike],
                 transform: Transform | None = None, *, split: str = "train",
                 shuffle_buffer: int = 0, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, verify: bool = True,
                 swap_color_channel: bool = False, augmenter: Augmenter | None = None):
        if shuffle_buffer < 0:
            raise ConfigError(f"TFRecordStream: shuffle_buffer={shuffle_buffer}; use 0 (file "
                              "order) or a positive number of records")
        self.shards = resolve_shards(source, split)
        self.world_size, self.rank = resolve_replicas(world_size, rank)
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self.verify = verify
        self.epoch = 0
        self.pipeline = ImagePipeline(transform, swap_color_channel, augmenter)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shard permutation and shuffle order."""
        self.epoch = int(epoch)

    def _read(self, shards: Sequence[str]) -> Iterator[Located]:
        for shard in shards:
            for offset, _, data in iter_record_spans(shard, verify=self.verify):
                yield shard, offset, data

    def records(self, worker_id: int = 0, num_workers: int = 1) -> Iterator[Located]:
        """The raw records one worker of this rank yields this epoch, in yield order."""
        total = self.world_size * num_workers
        shuffling = self.shuffle_buffer > 0
        if len(self.shards) >= total:
            mine = assign_shards(self.shards, worker_id, num_workers, self.rank, self.world_size,
                                 seed=self.seed if shuffling else None, epoch=self.epoch)
            located = self._read(mine)
        else:
            me = self.rank * num_workers + worker_id
            located = (r for n, r in enumerate(self._read(self.shards)) if n % total == me)
        if not shuffling:
            return located
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker_id])
        return shuffle_buffered(located, self.shuffle_buffer, rng)

    def decode(self, record: Located) -> tuple[Any, ...]:
        """The item of one record: its image through the pipeline, and its label."""
        return self.item(record, self.parse(record))

    @staticmethod
    def parse(record: Located) -> ImageExample:
        """The Example of one record, which must carry a label (FormatError naming it)."""
        shard, offset, data = record
        example = parse_image_example(data, source=shard, base_offset=offset + HEADER_BYTES)
        if example.label is None:
            raise FormatError(shard, offset, f"the Example has no {IMAGE_LABEL!r} feature; "
                              "a training stream needs a label per record")
        return example

    def item(self, record: Located, example: ImageExample) -> tuple[Any, ...]:
        """The item of a parsed record: its image through the pipeline, and its label."""
        image = decode_bytes(example.encoded, f"{record[0]} record at byte {record[1]}")
        return self.pipeline.item(image, int(example.label))

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for record in self.records(worker_id, num_workers):
            yield self.decode(record)
