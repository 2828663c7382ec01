"""Leakage across splits: an image in train whose copy (same bytes) or near copy (perceptual hash
within `near_duplicate_distance` bits) sits in val or test makes every test score a wrong
number. Splits prevent it by assigning a duplicate group as one unit (`merged_units`); the
blocking check finds what still crosses splits (`cross_split_pairs`) and, by the dataset's
`splits.leakage` policy, fails, warns, or keeps each crossing group in train only
(`keep_in_train`: the val/test copies leave the splits; sources are never touched).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.columns import Codes
from ml.quality.duplicates import DuplicateGroups, components, duplicate_groups
from ml.quality.issues import QualityConfig

LEAKAGE_POLICIES = ("fail", "warn", "keep_in_train")
MAX_MERGED_UNITS = 4      # a duplicate component joining more split units is a cluster of
                          # similar images (aligned faces, blank frames), not copies of one
PAIR_COLUMNS = ("row_a", "row_b", "kind", "distance")


def find_duplicates(frame: pd.DataFrame, config: QualityConfig) -> DuplicateGroups:
    """Exact groups by the `sha256` column and near groups by `phash` (absent: none)."""
    sha = frame["sha256"] if "sha256" in frame.columns else pd.Series([""] * len(frame))
    phash = (frame["phash"].array if "phash" in frame.columns else          # not as objects
             pd.arrays.IntegerArray(np.zeros(len(frame), np.uint64), np.ones(len(frame), bool)))
    return duplicate_groups(sha, phash, config.near_duplicate_distance)


def duplicate_pairs(groups: DuplicateGroups) -> pd.DataFrame:
    """Every duplicate relation as pairs of rows: exact (each member with its group's first
    row) and near (as found), without repeats (a near pair of two identical files is the
    exact pair already)."""
    exact = groups.exact_group
    member = np.flatnonzero(exact >= 0)
    first_row = np.full(int(exact.max()) + 1 if member.size else 0, len(exact), dtype=np.int64)
    np.minimum.at(first_row, exact[member], member)     # each group's first row
    first = first_row[exact[member]]
    keep = member != first
    exact_pairs = pd.DataFrame({"row_a": first[keep], "row_b": member[keep], "kind": "exact",
                                "distance": 0})
    near = groups.pairs
    if near.empty:
        return exact_pairs
    near = near.assign(kind="near")[list(PAIR_COLUMNS)]
    pairs = pd.concat([exact_pairs, near], ignore_index=True)
    return pairs.drop_duplicates(["row_a", "row_b"], ignore_index=True)


def duplicate_components(n: int, pairs: pd.DataFrame) -> np.ndarray:
    """Each row's duplicate component (exact and near together), -1 for a row in none."""
    a, b = pairs["row_a"].to_numpy(np.int64), pairs["row_b"].to_numpy(np.int64)
    labels = components(n, a, b)
    member = np.zeros(n, dtype=bool)
    member[a] = member[b] = True
    return np.where(member, labels, -1)


def without_clusters(units: Codes, pairs: pd.DataFrame,
                     max_units: int = MAX_MERGED_UNITS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pairs whose duplicate component joins at most `max_units` split units, the pairs of
    larger components). Chained near pairs can link hundreds of similar but distinct images
    (aligned faces at 8 bits); merging those would put whole identities in one split, so they
    are reported as clusters instead of duplicates."""
    if pairs.empty:
        return pairs, pairs
    rows = duplicate_components(len(units), pairs)
    member = np.flatnonzero(rows >= 0)
    if units.one_per_row:                       # a component's units are its rows
        spread = np.bincount(rows[member])
        big = np.flatnonzero(spread > max_units)
    else:
        spread = pd.Series(units.codes[member]).groupby(rows[member]).nunique()
        big = spread.index[spread.to_numpy() > max_units].to_numpy()
    in_big = np.isin(rows[pairs["row_a"].to_numpy(np.int64)], big)
    return (pairs.loc[~in_big].reset_index(drop=True), pairs.loc[in_big].reset_index(drop=True))


def merged_units(units: Codes, pairs: pd.DataFrame) -> Codes:
    """`units` (a split unit per row) with units joined by a duplicate relation merged into one,
    named by its smallest unit id, so a duplicate group lands in one split. Only the joined
    units' names are compared; every other unit keeps its code's order."""
    if pairs.empty:
        return units
    a = units.codes[pairs["row_a"].to_numpy(np.int64)]
    b = units.codes[pairs["row_b"].to_numpy(np.int64)]
    n = len(units.names)
    labels = components(n, a, b)                # each unit's component: its first unit
    root = labels == np.arange(n)
    has_members = np.zeros(n, dtype=bool)
    has_members[labels[~root]] = True
    joined = np.flatnonzero(~root | has_members)
    smallest = pd.Series(units.names.take(joined)).groupby(labels[joined]).min()
    position = np.cumsum(root) - 1               # a component's place among the roots
    names = pd.Series(units.names.take(np.flatnonzero(root)))
    names.iloc[position[smallest.index.to_numpy()]] = smallest.to_numpy()
    return Codes(position[labels[units.codes]], pd.Index(names))


def cross_split_pairs(frame: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The duplicate pairs whose two rows are in different splits, with their splits, files
    and labels."""
    a, b = pairs["row_a"].to_numpy(np.int64), pairs["row_b"].to_numpy(np.int64)
    split = frame["split"]
    crossing = pairs.loc[_at(split, a) != _at(split, b)].reset_index(drop=True)
    a, b = crossing["row_a"].to_numpy(np.int64), crossing["row_b"].to_numpy(np.int64)
    for side, rows in (("a", a), ("b", b)):
        for column in ("split", "source_key", "label"):
            crossing[f"{column}_{side}"] = _at(frame[column], rows)
    return crossing


def _at(column: pd.Series, rows: np.ndarray) -> np.ndarray:
    """A column's text at the rows of some pairs (only those rows become Python objects: a
    million-row column is never turned into an object array)."""
    return column.iloc[rows].astype(str).to_numpy(dtype=object)


def label_conflicts(frame: pd.DataFrame, pairs: pd.DataFrame,
                    units: Codes | None = None) -> pd.DataFrame:
    """Duplicate pairs whose two images carry different labels (label noise: for identities,
    one face filed under two people); pairs inside one split unit (a before/after pair, the
    frames of one sequence) are one sample's parts, not noise."""
    a, b = pairs["row_a"].to_numpy(np.int64), pairs["row_b"].to_numpy(np.int64)
    differ = _at(frame["label"], a) != _at(frame["label"], b)
    if units is not None:
        differ &= units.codes[a] != units.codes[b]
    return pairs.loc[differ].reset_index(drop=True)


def keep_in_train(frame: pd.DataFrame, pairs: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """Rows to take out of the splits so that no duplicate component crosses splits: each
    crossing component stays in its first split of `names` (train first) and its copies in
    the others go."""
    component = duplicate_components(len(frame), pairs)
    rank = pd.Series(frame["split"].astype(str)).map({n: i for i, n in enumerate(names)})
    rank = rank.fillna(len(names)).to_numpy(np.int64)
    member = component >= 0
    home = pd.Series(rank[member]).groupby(component[member]).transform("min").to_numpy()
    drop = np.zeros(len(frame), dtype=bool)
    drop[np.flatnonzero(member)] = rank[member] != home
    return drop
