"""ClassBalancedStream: class-balanced resampling of a TFRecordStream (seed 003's imbalance).

A stream cannot be indexed, so a Sampler cannot reweight it; instead each record is repeated a
random number of times whose expectation is its class's rate,

    rate_c = w_c * N / sum_k(n_k * w_k),   w_c = 1 / n_c ** power

(n_c: the class's record count, N the total). The epoch keeps N records on average, and class c
gets a share proportional to n_c * w_c: power=1 makes every class equally frequent (rare classes
repeated, common ones thinned out), power=0 is the plain stream. A record is emitted
floor(rate_c) times plus once more with probability frac(rate_c); the emitted records then pass
through a shuffle buffer so that repeats do not sit side by side. Repeats are decoded (and
augmented) separately.

`class_counts` come from a pass over the shards that parses every record's label without decoding
any image (`count_labels`). Randomness is seeded by (seed, epoch, rank, worker), like the stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from ml.datasets.tfrecord_stream import Located, TFRecordStream, shuffle_buffered
from ml.errors import ConfigError, DatasetError, FormatError
from ml.formats.example_proto import ImageExample, parse_image_example
from ml.formats.tfrecord import HEADER_BYTES, iter_record_spans
from ml.samplers import class_balance


def count_labels(shards: Iterable[str], num_classes: int,
                 verify: bool = True) -> tuple[np.ndarray, dict[int, str]]:
    """(records per label as an int64 array of num_classes, label -> class text where the
    records carry one), from every record of `shards`; no image is decoded."""
    counts = np.zeros(num_classes, dtype=np.int64)
    names: dict[int, str] = {}
    for shard in shards:
        for offset, _, data in iter_record_spans(shard, verify=verify):
            example = parse_image_example(data, source=shard, base_offset=offset + HEADER_BYTES)
            label = example.label
            if label is None or not 0 <= label < num_classes:
                raise FormatError(shard, offset, f"label {label!r} is not a class index in "
                                  f"[0, {num_classes - 1}]")
            counts[label] += 1
            if example.text and label not in names:
                names[label] = example.text
    return counts, names


def balanced_rates(class_counts: Sequence[int] | np.ndarray, power: float = 1.0) -> np.ndarray:
    """Expected copies per record of each class (0 for classes without records)."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts < 0):
        raise ConfigError(f"class counts {list(counts)} must be one non-negative count per class")
    if counts.sum() == 0:
        raise DatasetError("class-balanced sampling: every class count is zero; the split has "
                           "no records")
    if not 0.0 <= power <= 1.0:
        raise ConfigError(f"balance power {power}: use 0 (no balancing) to 1 (equal classes)")
    weights, _ = class_balance(counts, power)
    return weights * counts.sum() / float((counts * weights).sum())


class ClassBalancedStream(IterableDataset):
    """The items of `stream`, resampled to balance classes (see the module docstring).

    `class_weights` (label -> expected copies of one record) and `expected_class_share`
    (label -> expected fraction of the epoch) are plain dicts, ready for metadata.
    """

    def __init__(self, stream: TFRecordStream, class_counts: Sequence[int] | np.ndarray,
                 power: float = 1.0, shuffle_buffer: int = 1024, seed: int = 0):
        if shuffle_buffer < 1:
            raise ConfigError(f"ClassBalancedStream: shuffle_buffer={shuffle_buffer}; repeats "
                              "need a buffer of at least 1 record (larger spreads them apart)")
        self.stream = stream
        self.rates = balanced_rates(class_counts, power)
        counts = np.asarray(class_counts, dtype=np.float64)
        present = np.flatnonzero(counts > 0).tolist()
        _, share = class_balance(counts, power)
        self.class_weights = {c: float(self.rates[c]) for c in present}
        self.expected_class_share = {c: float(share[c]) for c in present}
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.stream.set_epoch(epoch)

    def resampled(self, records: Iterable[Located], rng: np.random.Generator
                  ) -> Iterator[tuple[Located, ImageExample]]:
        """Each record (parsed once) floor(rate) times, plus once with probability frac(rate)."""
        for record in records:
            example = self.stream.parse(record)
            label = int(example.label)
            if not 0 <= label < len(self.rates):
                raise FormatError(record[0], record[1], f"label {label} is outside the "
                                  f"{len(self.rates)} counted classes")
            rate = self.rates[label]
            copies = math.floor(rate) + int(rng.random() < rate - math.floor(rate))
            for _ in range(copies):
                yield record, example

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.seed, self.epoch, self.stream.rank, worker_id, 1])
        records = self.resampled(self.stream.records(worker_id, num_workers), rng)
        for record, example in shuffle_buffered(records, self.shuffle_buffer, rng):
            yield self.stream.item(record, example)

