"""Train/val/test splits: seeded, group-aware, stratified by label, and stable.

Assignment is by a hash of (seed, unit) where the unit is the sample's group when the group must
stay whole (before/after pairs and object sequences always; identities when asked, as face
verification needs held-out identities) and the sample itself otherwise. A unit's split depends
only on its own id and the seed, so adding samples never moves old ones. Every label's samples
go through the same thresholds, so each class splits at the configured ratios up to sampling
noise (exact per-class quotas would make a new sample move old ones; we chose stability and
report the realised per-class counts). Duplicates (same bytes, or near copies by perceptual
hash: ml/quality/leakage.py) join one unit, so a copy never lands in another split than its
original (`group_duplicates`, default on).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from ml.atomic import atomic_path
from ml.bar_chart import grouped_bar_png
from ml.columns import Codes, text_column
from ml.errors import ConfigError
from ml.options import Bool, Float, Int, Options, Text
from ml.publish import publish_dir
from ml.quality.leakage import LEAKAGE_POLICIES
from ml.safe_paths import check_name, contained, link_or_copy_new, safe_component, safe_components

ALWAYS_GROUPED = ("pair", "sequence")
CLASS_COUNTS_STEM = "class_counts"           # its table lies beside the manifests <split>.parquet
CLASS_COUNTS_NAME = f"{CLASS_COUNTS_STEM}.parquet"


class SplitSpec(Options):
    """The dataset's `splits:` section: how samples are assigned to splits."""

    ratios: tuple[Annotated[Float, Field(ge=0.0)], ...] = Field(
        (0.80, 0.12, 0.08), description="One ratio per split, summing to 1 (seed 004's 80/12/8)")
    names: tuple[Text, ...] = Field(
        ("train", "val", "test"), description="The splits' names, plain file names (letters, digits, `_`, `-`, `.`): each names a manifest and a folder")
    seed: Int = Field(0, description="Seed of the assignment hash")
    group_identities: Bool = Field(False, description="Keep every identity inside one split (face verification needs held-out identities)")
    link_tree: Bool = Field(False, description="Also build `splits/imagefolder/<split>/<label>/` of hard links (copies where links fail)")
    min_split_size: Annotated[Int, Field(ge=0)] = Field(1, description="The non-blocking check `splits_cover_every_class` warns when a split has fewer samples, or a class has none in a split (the latter not asked with `group_identities`)")
    group_duplicates: Bool = Field(True, description="Each group of duplicates (the same bytes, or perceptual hashes within `quality.near_duplicate_distance` bits) is assigned as one unit, so a copy never lands in another split than its original")
    leakage: Literal[LEAKAGE_POLICIES] = Field("fail", description="What the blocking check `no_leakage_across_splits` does with duplicates that still cross splits (with `group_duplicates: false`): `fail` (packing stops, the pairs are named), `warn`, or `keep_in_train` (their val/test copies leave the splits; sources are never touched)")

    SECTION: ClassVar[str] = "splits"

    @field_validator("names")
    @classmethod
    def _plain_distinct_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            try:
                check_name(name, "name")   # a split name becomes a file and folder name
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        if not names:
            raise ValueError("give at least one split name")
        if CLASS_COUNTS_STEM in names:
            raise ValueError(f"the name {CLASS_COUNTS_STEM!r} is taken by the per-class table "
                             f"{CLASS_COUNTS_NAME}; name the split otherwise")
        if len(set(names)) != len(names):
            raise ValueError("names must be distinct")
        return names

    @model_validator(mode="after")
    def _one_ratio_per_split(self) -> "SplitSpec":
        if len(self.ratios) != len(self.names):
            raise ValueError(f"{len(self.ratios)} ratios for {len(self.names)} names "
                             f"{list(self.names)}; give one ratio per split")
        if abs(sum(self.ratios) - 1.0) > 1e-6:
            raise ValueError(f"ratios {list(self.ratios)} must sum to 1")
        return self


def unit_hash(seed: int, unit: str) -> float:
    """Uniform in [0, 1), from sha256 of seed and unit id: identical on every machine."""
    return float(unit_hashes(seed, [unit])[0])


HASHED_AT_ONCE = 65_536     # units whose digests are held at a time (memory stays flat)


def unit_hashes(seed: int, units) -> np.ndarray:
    """`unit_hash` of many units at once: the first 8 bytes of each sha256, big-endian, as
    float64 / 2**64 (the same values, one hashlib call per unit and no other Python per unit),
    HASHED_AT_ONCE units at a time."""
    seeded = hashlib.sha256(f"{seed}\x00".encode("utf-8"))
    if isinstance(units, (pa.Array, pa.ChunkedArray)):
        text = units
    elif isinstance(units, (pd.Series, pd.Index)):
        text = pa.array(pd.Series(units).astype(str), pa.large_string())
    else:
        text = pa.array([str(u) for u in units], pa.large_string())
    out = np.empty(len(text), dtype=np.float64)
    for start in range(0, len(text), HASHED_AT_ONCE):
        digests = []
        add = digests.append
        chunk = text.slice(start, HASHED_AT_ONCE).cast(pa.large_binary())
        for unit in chunk.to_pylist():              # UTF-8 bytes, no encode per unit
            h = seeded.copy()
            h.update(unit)
            add(h.digest())
        first8 = np.frombuffer(b"".join(digests), dtype=">u8")[::4]
        out[start:start + len(first8)] = first8.astype(np.float64) / 2.0 ** 64
    return out


def split_units(frame: pd.DataFrame, spec: SplitSpec) -> Codes:
    """The unit each sample is assigned with (its group when grouped, else itself), factorized
    once for the duplicate merging and the assignment."""
    grouped = frame["group_kind"].isin(ALWAYS_GROUPED)
    if spec.group_identities:
        grouped |= frame["group_kind"].eq("identity")
    if not grouped.any():      # each sample its own unit; sample ids are distinct (the catalog
        return Codes(np.arange(len(frame), dtype=np.int64),       # refuses repeats)
                     pd.Index(frame["sample_id"]))
    return Codes.of(frame["group_id"].where(grouped, frame["sample_id"]))


def assign_splits(frame: pd.DataFrame, spec: SplitSpec, units: Codes | None = None) -> pd.Series:
    """Split name per row (index aligned with `frame`): each distinct unit (`units`, default
    split_units) hashed once, the thresholds applied to the whole column, the names given by
    Arrow (a dictionary decoded: no Python string per row)."""
    units = split_units(frame, spec) if units is None else units
    edges = np.cumsum(spec.ratios)[:-1]
    which = np.searchsorted(edges, unit_hashes(spec.seed, units.names), side="right")
    names = pa.DictionaryArray.from_arrays(pa.array(which[units.codes], pa.int32()),
                                           pa.array(spec.names, pa.large_string()))
    return pd.Series(names.cast(pa.large_string()), index=frame.index, name="split", dtype="str")


def class_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Samples per (split, label): columns split, label (text) and samples, sorted by split and
    label, one grouping of the whole table that the metadata, the histogram and the Parquet
    table all read. Grouped by Arrow (a third of pandas' time at 1M rows, on the main thread
    while the manifests encode); a row with no split or label counts nowhere, as in pandas."""
    keys = pa.table({name: text_column(frame[name].astype("str"), missing=None)
                     for name in ("split", "label")})
    counted = keys.group_by(["split", "label"], use_threads=False).aggregate([([], "count_all")])
    counted = counted.filter(pc.and_(pc.is_valid(counted["split"]),
                                     pc.is_valid(counted["label"])))
    table = pd.DataFrame({"split": counted["split"].to_pandas().astype(str),
                          "label": counted["label"].to_pandas().astype(str),
                          "samples": counted["count_all"].to_numpy().astype(np.int64)})
    return table.sort_values(["split", "label"], kind="stable", ignore_index=True)


def split_counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{split: {label: count}} of a `class_counts` table, for metadata and the histogram."""
    out: dict[str, dict[str, int]] = {}
    for split, label, n in zip(table["split"], table["label"], table["samples"].tolist()):
        out.setdefault(split, {})[label] = n
    return out


SHOWN_CLASSES = 5         # classes named in a coverage warning


def coverage_warnings(counts: dict[str, dict[str, int]], spec: SplitSpec) -> list[str]:
    """What a user should know before training on these splits: a split (with a ratio above 0)
    smaller than spec.min_split_size, and classes with no sample in such a split (not asked
    when identities are kept whole: held-out identities are the point then)."""
    asked = [name for name, ratio in zip(spec.names, spec.ratios) if ratio > 0]
    problems = []
    for name in asked:
        size = sum(counts.get(name, {}).values())
        if size < spec.min_split_size:
            problems.append(f"split {name!r} has {size} sample(s), fewer than min_split_size "
                            f"{spec.min_split_size}")
    if spec.group_identities:
        return problems
    labels = sorted({label for per in counts.values() for label in per if label != ""})
    for name in asked:
        absent = [label for label in labels if not counts.get(name, {}).get(label)]
        if absent:
            shown = ", ".join(absent[:SHOWN_CLASSES]) + (" ..." if len(absent) > SHOWN_CLASSES
                                                         else "")
            problems.append(f"{len(absent)} of {len(labels)} classes have no {name!r} sample "
                            f"({shown})")
    return problems


def write_class_counts(table: pd.DataFrame, out_dir: Path) -> Path:
    """A `class_counts` table as Parquet (split, label, samples), written atomically: the whole
    per-class picture at any number of classes, which metadata only summarises."""
    path = contained(out_dir, CLASS_COUNTS_NAME, what="class counts table")
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return path


def manifest_targets(split: pd.Series, out_dir: Path, spec: SplitSpec) -> dict[Path, np.ndarray]:
    """Each split's manifest path `<out_dir>/<split>.parquet` and its rows (a mask over `split`,
    the split of each row of the split table), in the order of `spec.names`: the split table's
    edit writes them in the same pass as the table itself (`TableEdit.also`), each atomically."""
    return {contained(out_dir, f"{check_name(name, 'split name')}.parquet",
                      what="split manifest"): (split == name).to_numpy(bool)
            for name in spec.names}


def build_link_tree(frame: pd.DataFrame, tree_dir: Path, file_column: str = "file") -> dict[str, int]:
    """ImageFolder layout `<split>/<label>/<name>` of hard links (copies where links fail)
    to the files in `file_column`, built in a temporary sibling and published whole.

    Labels and file names come from data, so each becomes one safe path component
    (ml/safe_paths.py: a label like '../../images/c' is a folder named '%2E.%2F%2E.%2Fimages%2Fc'
    inside the split folder), every link is checked to lie inside the tree, and a link never
    replaces an existing file."""
    counts = {"link": 0, "copy": 0}
    labels = frame["label"].fillna("").astype(str).replace("", "unlabeled")
    label_dirs = safe_components(labels.unique().tolist())
    split_dirs = {s: check_name(s, "split name") for s in frame["split"].astype(str).unique()}
    with publish_dir(tree_dir) as build:
        used: set[tuple[str, str, str]] = set()
        made: set[Path] = set()
        for src, split, label, sample_id in zip(frame[file_column], frame["split"].astype(str),
                                                labels, frame["sample_id"].astype(str)):
            name = safe_component(os.path.basename(src))
            key = (split_dirs[split], label_dirs[label], name.casefold())
            if key in used:   # same file name twice in one class folder: keep both
                name = safe_component(f"{sample_id}_{os.path.basename(src)}")
                key = key[:2] + (name.casefold(),)
            used.add(key)
            dst = contained(build.path, split_dirs[split], label_dirs[label], name,
                            what=f"link tree entry for {src}")
            if dst.parent not in made:
                dst.parent.mkdir(parents=True, exist_ok=True)
                made.add(dst.parent)
            counts[link_or_copy_new(src, dst)] += 1
    return counts


def class_balance_png(counts: dict[str, dict[str, int]], max_labels: int = 40) -> bytes:
    """A grouped bar chart of samples per class and split (top classes when there are many),
    drawn with Pillow (ml/bar_chart.py: no matplotlib in the splits step)."""
    totals: dict[str, int] = {}
    for per in counts.values():
        for label, n in per.items():
            totals[label] = totals.get(label, 0) + n
    labels = sorted(totals, key=lambda l: (-totals[l], l))[:max_labels]
    title = "class balance per split"
    if len(totals) > max_labels:
        title += f" (top {max_labels} of {len(totals)} classes)"
    return grouped_bar_png(labels, {split: [per.get(l, 0) for l in labels]
                                    for split, per in counts.items()}, title, "samples")


PREVIEW_SCAN = 4096        # rows of each split the preview picks its classes from


def preview_rows(frame: pd.DataFrame, per_split: int = 8) -> pd.DataFrame:
    """Up to `per_split` rows of each split for the thumbnail grid, each of another class while
    classes last (the first rows of a split are often one class: one identity's images).
    Only split, label and file come back (what the thumbnail grid shows). Only the first
    PREVIEW_SCAN rows of each split are looked at, found by their split's code."""
    codes, names = pd.factorize(frame["split"])
    first = np.sort(np.concatenate(
        [np.flatnonzero(codes == code)[:PREVIEW_SCAN] for code in range(len(names))]
        or [np.zeros(0, np.int64)]))
    frame = frame[["split", "label", "file"]].iloc[first]
    distinct = frame.drop_duplicates(["split", "label"])
    rest = frame.drop(index=distinct.index)
    picked = pd.concat([distinct, rest]).groupby("split", sort=False).head(per_split)
    return picked.sort_values("split", kind="stable", key=lambda s: s.map(
        {name: i for i, name in enumerate(pd.unique(frame["split"]))}))


def thumbnail_grid(files: list[str], captions: list[str], cell: int = 64, columns: int = 8) -> bytes:
    """A small PNG grid of thumbnails with captions (for the asset's markdown)."""
    from PIL import Image, ImageDraw

    from ml.imageio import load_rgb

    rows = max(1, -(-len(files) // columns))
    grid = Image.new("RGB", (columns * cell, rows * (cell + 12)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, (f, cap) in enumerate(zip(files, captions)):
        x, y = (i % columns) * cell, (i // columns) * (cell + 12)
        try:
            img = load_rgb(f, draft_size=(cell, cell))
            img.thumbnail((cell, cell))
            grid.paste(img, (x + (cell - img.width) // 2, y + (cell - img.height) // 2))
        except Exception as exc:  # a thumbnail must never fail the asset
            draw.text((x + 2, y + 2), type(exc).__name__[:10], fill=(200, 0, 0))
        draw.text((x + 2, y + cell), cap[:10], fill=(0, 0, 0))
    buf = io.BytesIO()
    grid.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
