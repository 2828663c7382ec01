"""Verification pairs for face evaluation: balanced same / different identity pairs in folds.

The insightface / AdaFace evaluation splits the pair list into `n_folds` CONTIGUOUS folds
(KFold without shuffling) and picks the threshold on 9 folds to score the 10th, so every fold
must itself be balanced. make_verification_pairs returns pairs laid out that way: fold f is
rows [f * n/n_folds, (f+1) * n/n_folds), alternating same, different, same, ... so every fold
and every even-length prefix is half same, half different.

Sampling (seeded with numpy's default_rng, so a seed gives the same pairs on every machine):
- same pairs: an identity drawn uniformly among identities with at least two samples, then
  two distinct samples of it; identities with one sample give no same pairs;
- different pairs: uniformly over all pairs of samples with different identities;
no pair (unordered) appears twice. Each pair is stored as (i, j) with i < j.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Iterable, Iterator

import numpy as np

from ml.errors import ConfigError

Pair = tuple[int, int]


@dataclass(frozen=True)
class VerificationPairs:
    """Index pairs into the sample list, their same-identity flag and their fold."""

    pairs: np.ndarray       # (n, 2) int64 sample indices, i < j
    issame: np.ndarray      # (n,) bool
    fold: np.ndarray        # (n,) int64, contiguous blocks 0, 0, ..., 1, 1, ...
    n_folds: int

    def __len__(self) -> int:
        return len(self.issame)


def make_verification_pairs(labels: Iterable, n_pairs: int, seed: int,
                            n_folds: int = 10) -> VerificationPairs:
    """Draw n_pairs balanced pairs from samples whose identity is labels[i] (see module doc)."""
    labels = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels)
    if n_folds < 1 or n_pairs < 0 or n_pairs % (2 * n_folds):
        raise ConfigError(f"n_pairs={n_pairs} with n_folds={n_folds}: each fold must hold as many "
                          f"same as different pairs, so n_pairs must be a multiple of "
                          f"{2 * max(n_folds, 1)}")
    _, identity = np.unique(labels, return_inverse=True)
    identity = identity.reshape(-1).astype(np.int64)
    rng = np.random.default_rng(seed)
    half = n_pairs // 2
    same = _draw_same_pairs(rng, identity, half)
    different = _draw_different_pairs(rng, identity, half)
    return _arrange_in_folds(same, different, n_folds)


def _identity_groups(identity: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(identity, kind="stable")
    bounds = np.flatnonzero(np.diff(identity[order])) + 1
    return np.split(order, bounds) if len(order) else []


def _draw_same_pairs(rng: np.random.Generator, identity: np.ndarray, need: int) -> np.ndarray:
    groups = [g for g in _identity_groups(identity) if len(g) >= 2]
    possible = sum(len(g) * (len(g) - 1) // 2 for g in groups)
    if need > possible:
        raise ConfigError(f"{need} same-identity pairs asked for, but only {possible} distinct "
                          f"ones exist ({len(groups)} identities have two or more samples; "
                          "identities with one sample give none); ask for fewer pairs")

    def draw() -> Pair:
        group = groups[rng.integers(len(groups))]
        a, b = rng.choice(group, 2, replace=False)
        return (int(min(a, b)), int(max(a, b)))

    def every() -> Iterator[Pair]:
        for group in groups:
            yield from combinations(sorted(int(i) for i in group), 2)

    return _unique_pairs(rng, need, possible, draw, every)


def _draw_different_pairs(rng: np.random.Generator, identity: np.ndarray,
                          need: int) -> np.ndarray:
    n = len(identity)
    counts = np.bincount(identity) if n else np.zeros(0, np.int64)
    possible = (n * n - int((counts.astype(np.int64) ** 2).sum())) // 2
    if need > possible:
        raise ConfigError(f"{need} different-identity pairs asked for, but only {possible} exist "
                          f"among {n} samples of {len(counts)} identities; ask for fewer pairs")
    order = np.argsort(identity, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    others = n - counts[identity]                       # samples of other identities, per sample
    cumulative = np.cumsum(others)

    def draw() -> Pair:
        # i with probability proportional to its number of partners, then j uniform among
        # them: every different-identity pair is equally likely.
        i = int(np.searchsorted(cumulative, rng.integers(cumulative[-1]), side="right"))
        r = int(rng.integers(others[i]))
        start = starts[identity[i]]
        j = int(order[r if r < start else r + counts[identity[i]]])
        return (min(i, j), max(i, j))

    def every() -> Iterator[Pair]:
        for i, j in combinations(range(n), 2):
            if identity[i] != identity[j]:
                yield (i, j)

    return _unique_pairs(rng, need, possible, draw, every)


def _unique_pairs(rng: np.random.Generator, need: int, possible: int,
                  draw: Callable[[], Pair], every: Callable[[], Iterator[Pair]]
                  ) -> np.ndarray:
    """`need` distinct pairs: rejection sampling while that is cheap, else pick from them all."""
    chosen: dict[Pair, None] = {}
    if 2 * need <= possible:
        attempts, limit = 0, 20 * need + 1000
        while len(chosen) < need and attempts < limit:
            chosen.setdefault(draw(), None)
            attempts += 1
    if len(chosen) < need:   # dense request (or unlucky draws): choose among the rest directly
        rest = [p for p in every() if p not in chosen]
        for k in rng.choice(len(rest), need - len(chosen), replace=False):
            chosen[rest[int(k)]] = None
    return np.array(list(chosen), dtype=np.int64).reshape(-1, 2)


def _arrange_in_folds(same: np.ndarray, different: np.ndarray, n_folds: int) -> VerificationPairs:
    n = 2 * len(same)
    pairs = np.empty((n, 2), np.int64)
    pairs[0::2], pairs[1::2] = same, different
    issame = np.zeros(n, bool)
    issame[0::2] = True
    fold = np.repeat(np.arange(n_folds, dtype=np.int64), n // n_folds)
    return VerificationPairs(pairs, issame, fold, n_folds)
