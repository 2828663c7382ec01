"""Dataset partitions: a dataset declared with `partitions: N` (`shards: N`, its older name,
still reads) is catalogued, verified and resized in N independent pieces.

A sample belongs to the partition its stable id hashes to, so the assignment depends only on the
sample's identifier: adding images moves no existing sample to another partition, and every
run, process or machine agrees on it. Partition keys are zero-padded ("00".."N-1") so they sort
in order. (TFRecord files are the project's only "shards".)
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ml.errors import ConfigError

MAX_PARTITIONS = 1024


def check_partition_count(value, where: str) -> int:
    """A validated partition count: a whole number from 1 (unpartitioned) to MAX_PARTITIONS."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARTITIONS:
        raise ConfigError(f"{where}: partitions must be a whole number from 1 to {MAX_PARTITIONS} "
                          f"(1 = unpartitioned), got {value!r}")
    return value


def partition_keys(count: int) -> list[str]:
    """The partition keys of `count` partitions: '00', '01', ... (width grows with the count)."""
    width = max(2, len(str(count - 1)))
    return [f"{i:0{width}d}" for i in range(count)]


def _digest(sample_id: str) -> bytes:
    """What a sample's partition is computed from: the first 8 bytes of sha1 of its id."""
    return hashlib.sha1(str(sample_id).encode("utf-8")).digest()[:8]


def partition_of(sample_id: str, count: int) -> int:
    """The partition (0..count-1) a sample id belongs to: its digest, big-endian, modulo the
    count."""
    return int.from_bytes(_digest(sample_id), "big") % count


def partition_codes(sample_ids, count: int) -> np.ndarray:
    """partition_of of a whole column (one hashlib call per id and no other Python per id)."""
    digests = b"".join(_digest(s) for s in sample_ids)
    return (np.frombuffer(digests, dtype=">u8") % np.uint64(count)).astype(np.int64)


def partition_index(key: str, count: int) -> int:
    """The position of partition `key` among `count` partitions; ConfigError when there is no
    such partition."""
    keys = partition_keys(count)
    if key not in keys:
        raise ConfigError(f"partition {key!r} does not exist; a dataset with {count} partitions "
                          f"has partitions {keys[0]}..{keys[-1]}")
    return keys.index(key)


def rows_in_partition(frame: pd.DataFrame, key: str, count: int) -> pd.DataFrame:
    """The rows of `frame` (with a sample_id column) whose id hashes to partition `key`."""
    index = partition_index(key, count)
    return frame.loc[partition_codes(frame["sample_id"], count) == index]
