"""Exact and near-duplicate groups, sub-quadratic at millions of images.

Exact duplicates share their content sha256 (the bytes verification already hashed). Near
duplicates are images whose 64-bit perceptual hashes (ml/quality/signals.py) differ in at most
`max_distance` bits; re-encoded, resized and brightness-shifted copies land within 2 bits, a
crop of 1% a side within about 8, unrelated photos 20 to 30 bits apart - but aligned faces of
different people can come within 6 to 8, hence the default 4 (ml/quality/issues.py), and
ml/quality/leakage.py keeps chains of similar images from merging into one split unit.

The search is locality-sensitive hashing by bit sampling: each of `tables` tables keys every
distinct hash by `key_bits` of its 64 bits chosen at random (a fixed seed, so runs agree), and
only hashes sharing a key are compared. A pair `d` bits apart shares a table's key with
probability C(64 - d, key_bits) / C(64, key_bits); the number of tables is chosen so that a pair
at `max_distance` is found with probability at least RECALL (closer pairs more surely), and the
key length so that a key holds about one distinct hash on average. Cost: tables x n log n; 1M
hashes take seconds, not the 5e11 comparisons of all pairs. Groups are the connected
components of the pairs found (a chain a~b~c is one group).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

RECALL = 0.99             # probability that a pair at max_distance shares a key in some table
MIN_KEY_BITS, MAX_KEY_BITS = 10, 20
MAX_BUCKET_WINDOW = 64    # in a key shared by more hashes, each is compared with its next 64
SEED = 20260


@dataclass(frozen=True)
class DuplicateGroups:
    exact_group: np.ndarray       # int64 per row: group number, -1 when the bytes are unique
    near_group: np.ndarray        # int64 per row: group number, -1 when no near duplicate
    pairs: pd.DataFrame           # row_a, row_b, distance: the near pairs found (row_a < row_b)


def exact_groups(keys) -> np.ndarray:
    """Group numbers of rows whose key (sha256) occurs more than once, numbered 0.. in order of
    first appearance; -1 elsewhere and for empty keys. Factorized codes are in that order
    already, so the repeated ones are renumbered by a running count (no sort)."""
    keys = keys if isinstance(keys, pd.Series) else pd.Series(keys)       # Arrow text stays so
    codes, uniques = pd.factorize(keys.astype("str").fillna(""), sort=False)
    repeated = np.bincount(codes, minlength=len(uniques)) > 1
    repeated &= np.asarray(uniques != "")
    number = np.cumsum(repeated) - 1
    return np.where(repeated[codes], number[codes], -1).astype(np.int64)


def table_plan(distinct: int, max_distance: int) -> tuple[int, int]:
    """(tables, key_bits) for `distinct` hashes and the wanted distance."""
    key_bits = int(np.clip(math.ceil(math.log2(max(distinct, 2))), MIN_KEY_BITS, MAX_KEY_BITS))
    share = math.comb(64 - max_distance, key_bits) / math.comb(64, key_bits)
    tables = 1 if share >= 1 else math.ceil(math.log(1 - RECALL) / math.log(1 - share))
    return tables, key_bits


def near_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a, b, distance), a < b, of positions in `hashes` (uint64) at most `max_distance`
    bits apart; identical hashes are pairs at distance 0."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    distinct, inverse = np.unique(hashes, return_inverse=True)
    a_parts, b_parts = [], []
    if distinct.size > 1 and max_distance > 0:
        tables, key_bits = table_plan(distinct.size, max_distance)
        rng = np.random.default_rng(SEED)
        for _ in range(tables):
            positions = rng.choice(64, key_bits, replace=False).astype(np.uint64)
            key = np.zeros(distinct.size, dtype=np.uint64)
            for j, p in enumerate(positions):
                key |= ((distinct >> p) & np.uint64(1)) << np.uint64(j)
            a, b = _same_key_pairs(key)
            close = np.bitwise_count(distinct[a] ^ distinct[b]) <= max_distance
            a_parts.append(a[close])
            b_parts.append(b[close])
    # distinct hashes that are close, as pairs of distinct-hash ids
    ua = np.concatenate(a_parts) if a_parts else np.zeros(0, np.int64)
    ub = np.concatenate(b_parts) if b_parts else np.zeros(0, np.int64)
    if ua.size:
        lo, hi = np.minimum(ua, ub), np.maximum(ua, ub)
        unique_pairs = np.unique(lo.astype(np.int64) * distinct.size + hi)
        ua, ub = np.divmod(unique_pairs, distinct.size)
    # back to rows: every row of one distinct hash with every row of the other, and rows that
    # share a hash with each other
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(distinct.size + 1))
    cross_a, cross_b, cross_dist = _cross_rows(order, starts, ua.astype(np.int64),
                                               ub.astype(np.int64),
                                               np.bitwise_count(distinct[ua] ^ distinct[ub]))
    same_a, same_b = _same_key_pairs(inverse.astype(np.uint64))
    a = np.concatenate([cross_a, same_a]).astype(np.int64)
    b = np.concatenate([cross_b, same_b]).astype(np.int64)
    dist = np.concatenate([cross_dist, np.zeros(same_a.size, np.int64)])
    return np.minimum(a, b), np.maximum(a, b), dist


def _cross_rows(order: np.ndarray, starts: np.ndarray, ua: np.ndarray, ub: np.ndarray,
                distance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row of hash ua[k] paired with every row of hash ub[k], for all k at once (rows of
    hash h: order[starts[h]:starts[h + 1]]), with that pair's distance: no Python per pair."""
    cx, cy = starts[ua + 1] - starts[ua], starts[ub + 1] - starts[ub]
    sizes = cx * cy
    pair = np.repeat(np.arange(ua.size), sizes)
    within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    i, j = np.divmod(within, cy[pair]) if pair.size else (within, within)
    return (order[starts[ua][pair] + i], order[starts[ub][pair] + j],
            np.repeat(distance.astype(np.int64), sizes))


def _same_key_pairs(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of positions with equal keys: every pair within a key shared by at most
    MAX_BUCKET_WINDOW + 1 positions, each position with its next MAX_BUCKET_WINDOW in larger ones."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    a_parts, b_parts = [], []
    live = np.arange(order.size - 1)
    for offset in range(1, MAX_BUCKET_WINDOW + 1):
        live = live[live + offset < order.size]
        live = live[sorted_key[live] == sorted_key[live + offset]]
        if live.size == 0:
            break
        a_parts.append(order[live])
        b_parts.append(order[live + offset])
    if not a_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(a_parts), np.concatenate(b_parts)


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component labels (the smallest member's position) of n nodes and edges a-b."""
    labels = np.arange(n, dtype=np.int64)
    if a.size == 0:
        return labels
    while True:
        low = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        while True:                                   # pointer jumping to each root
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(labels, before):
            return labels


def _renumber(groups: np.ndarray) -> np.ndarray:
    """Groups numbered 0.. in order of first appearance; -1 stays -1."""
    out = np.full(groups.size, -1, dtype=np.int64)
    member = groups >= 0
    if member.any():
        _, first, inverse = np.unique(groups[member], return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")
        out[member] = rank[inverse]
    return out


def duplicate_groups(sha256, phash, max_distance: int) -> DuplicateGroups:
    """Exact groups by sha256 and near groups by phash (rows without a phash are in none)."""
    exact = exact_groups(sha256)
    phash = pd.array(phash, dtype="UInt64")
    hashed = np.flatnonzero(~np.asarray(phash.isna()))
    a, b, dist = near_pairs(np.asarray(phash[hashed], dtype=np.uint64), max_distance)
    a, b = hashed[a], hashed[b]
    labels = components(len(phash), a, b)
    in_pair = np.zeros(len(phash), dtype=bool)
    in_pair[a] = in_pair[b] = True
    near = _renumber(np.where(in_pair, labels, -1))
    pairs = pd.DataFrame({"row_a": a, "row_b": b, "distance": dist})
    return DuplicateGroups(exact, near, pairs.sort_values(["row_a", "row_b"], ignore_index=True))
