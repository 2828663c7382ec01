"""Shards: a dataset declared with `shards: N` is verified and resized in N independent pieces.

A sample belongs to the shard its stable id hashes to, so the assignment depends only on the
sample's identifier: adding images moves no existing sample to another shard, and every run,
process or machine agrees on it. Shard keys are zero-padded ("00".."N-1") so they sort in order.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ml.errors import ConfigError

MAX_SHARDS = 1024


def check_shard_count(value, where: str) -> int:
    """A validated shard count: a whole number from 1 (unsharded) to MAX_SHARDS."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SHARDS:
        raise ConfigError(f"{where}: shards must be a whole number from 1 to {MAX_SHARDS} "
                          f"(1 = unsharded), got {value!r}")
    return value


def shard_keys(count: int) -> list[str]:
    """The partition keys of `count` shards: '00', '01', ... (width grows with the count)."""
    width = max(2, len(str(count - 1)))
    return [f"{i:0{width}d}" for i in range(count)]


def _digest(sample_id: str) -> bytes:
    """What a sample's shard is computed from: the first 8 bytes of sha1 of its id."""
    return hashlib.sha1(str(sample_id).encode("utf-8")).digest()[:8]


def shard_of(sample_id: str, count: int) -> int:
    """The shard (0..count-1) a sample id belongs to: its digest, big-endian, modulo the count."""
    return int.from_bytes(_digest(sample_id), "big") % count


def shard_codes(sample_ids, count: int) -> np.ndarray:
    """shard_of of a whole column (one hashlib call per id and no other Python per id)."""
    digests = b"".join(_digest(s) for s in sample_ids)
    return (np.frombuffer(digests, dtype=">u8") % np.uint64(count)).astype(np.int64)


def shard_index(key: str, count: int) -> int:
    """The position of shard `key` among `count` shards; ConfigError when there is no such."""
    keys = shard_keys(count)
    if key not in keys:
        raise ConfigError(f"shard {key!r} does not exist; a dataset with {count} shards has "
                          f"shards {keys[0]}..{keys[-1]}")
    return keys.index(key)


def rows_in_shard(frame: pd.DataFrame, key: str, count: int) -> pd.DataFrame:
    """The rows of `frame` (with a sample_id column) whose id hashes to shard `key`."""
    index = shard_index(key, count)
    return frame.loc[shard_codes(frame["sample_id"], count) == index]
