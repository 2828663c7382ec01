"""The quality report of a verified sample table: issue counts overall and per class, the
flagged images with their scores, a gallery of the worst images per issue and of duplicate
pairs. Read from the signal columns verification recorded (no pixels are decoded again except
the few thumbnails the galleries show)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml.atomic import atomic_path
from ml.eval.pictures import image_grid_picture
from ml.imageio import decode, to_rgb
from ml.quality.issues import ISSUES, QualityConfig, flag_issues, issue_scores
from ml.quality.leakage import duplicate_pairs, find_duplicates, label_conflicts
from ml.safe_paths import contained
from ml.sample_status import OK

QUALITY_FOLDER = "quality"  # in the dataset's output folder: the tables and galleries
GALLERY_IMAGES = 16         # worst images shown per issue
GALLERY_PAIRS = 8           # duplicate pairs shown
THUMB = 96


@dataclass(frozen=True)
class QualityReport:
    counts: dict[str, int]              # issue -> flagged images (and exact/near duplicates)
    per_class: pd.DataFrame             # label, images, then one column per issue
    flagged: pd.DataFrame               # source_key, label, issues, a score per issue
    pairs: pd.DataFrame                 # duplicate pairs (rows of the measured table)
    measured: int                       # images with signals
    table: pd.DataFrame                 # the rows measured (what rows in pairs index)


def quality_report(table: pd.DataFrame, config: QualityConfig) -> QualityReport:
    """Issues of the usable rows that have signals (status ok, signals measured)."""
    measured = table["entropy"].notna().to_numpy() if "entropy" in table.columns \
        else np.zeros(len(table), dtype=bool)
    usable = (table["status"] == OK).to_numpy() & measured
    rows = table.loc[usable].reset_index(drop=True)
    scores = issue_scores(rows)
    flags = flag_issues(scores, config)
    pairs = duplicate_pairs(find_duplicates(rows, config))
    counts = {issue: int(flags[issue].sum()) for issue in ISSUES}
    kinds = pairs["kind"].value_counts() if len(pairs) else pd.Series(dtype=int)
    counts["exact_duplicate_pairs"] = int(kinds.get("exact", 0))
    counts["near_duplicate_pairs"] = int(kinds.get("near", 0))
    counts["duplicates_with_other_labels"] = len(label_conflicts(rows, pairs))
    counts["too_small_for_hash"] = int(rows["phash"].isna().sum()) if "phash" in rows else 0
    any_issue = flags.any(axis=1).to_numpy()
    flagged = pd.concat([rows.loc[any_issue, ["source_key", "label"]].astype(str),
                         pd.Series(flags.loc[any_issue].apply(
                             lambda r: ",".join(i for i in ISSUES if r[i]), axis=1),
                             name="issues", dtype=str),
                         scores.loc[any_issue].add_suffix("_score")], axis=1).reset_index(drop=True)
    per_class = flags.assign(label=rows["label"].astype(str).to_numpy(), images=1).groupby(
        "label", sort=True).sum().reset_index()[["label", "images", *ISSUES]]
    return QualityReport(counts, per_class, flagged, pairs, len(rows), rows.assign(
        **{f"{i}_score": scores[i].to_numpy() for i in ISSUES}))


SIZE_ISSUES = ("odd_aspect_ratio", "odd_size")       # the source files' sizes
PIXEL_ISSUES = tuple(issue for issue in ISSUES if issue not in SIZE_ISSUES)


def issues_per_split(frame: pd.DataFrame, config: QualityConfig) -> pd.DataFrame:
    """Images per split (split, images, measured, then one column per pixel issue), from the
    signal columns a split table carries from verification; empty when it has none (not
    verified at level decode). The size issues are the source files' and stay in the quality
    report: a split's images are already resized."""
    if "entropy" not in frame.columns:
        return pd.DataFrame(columns=["split", "images", "measured", *PIXEL_ISSUES])
    flags = flag_issues(issue_scores(frame), config)[list(PIXEL_ISSUES)]
    return (flags.assign(split=frame["split"].to_numpy(), images=1,
                         measured=frame["entropy"].notna().to_numpy())
            .groupby("split", sort=False).sum().reset_index()
            [["split", "images", "measured", *PIXEL_ISSUES]])


def write_tables(report: QualityReport, folder: Path) -> dict[str, Path]:
    """flagged.parquet, per_class.parquet and duplicate_pairs.parquet under `folder`."""
    written = {}
    rows = report.table
    keys = rows["source_key"].astype(str).to_numpy()
    pairs = report.pairs.assign(                     # the same columns when there are no pairs
        source_key_a=keys[report.pairs["row_a"].to_numpy(int)],
        source_key_b=keys[report.pairs["row_b"].to_numpy(int)])
    for name, frame in (("flagged", report.flagged), ("per_class", report.per_class),
                        ("duplicate_pairs", pairs)):
        path = contained(folder, f"{name}.parquet", what="quality table")
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        written[name] = path
    return written


def _thumbnail(path: str) -> np.ndarray | None:
    try:
        with decode(path, draft_size=(THUMB, THUMB)) as image:
            rgb = to_rgb(image)
            rgb.thumbnail((THUMB, THUMB))
            return np.asarray(rgb)
    except Exception:       # noqa: BLE001 - a file that changed since verification: not shown
        return None


def issue_galleries(report: QualityReport, folder: Path, title: str) -> dict[str, Path]:
    """One PNG per issue that flags images: its worst GALLERY_IMAGES (lowest scores), and one
    of duplicate pairs side by side; plain files only."""
    rows = report.table
    plain = (rows["member"].astype(str) == "").to_numpy() & (rows["path"].astype(str) != "").to_numpy()
    written = {}
    for issue in ISSUES:
        if report.counts[issue] == 0:
            continue
        scores = rows[f"{issue}_score"].to_numpy()
        candidates = np.flatnonzero(plain & np.isfinite(scores))
        worst = candidates[np.argsort(scores[candidates], kind="stable")]   # flagged first
        worst = worst[:min(GALLERY_IMAGES, report.counts[issue])]
        shown = [(t, f"{rows['source_key'].iat[i][-22:]} {scores[i]:.2f}") for i in worst
                 if (t := _thumbnail(rows["path"].iat[i])) is not None]
        if shown:
            grid = [shown[k:k + 4] for k in range(0, len(shown), 4)]
            written[issue] = image_grid_picture(
                [[t for t, _ in r] for r in grid], [], contained(folder, f"{issue}.png",
                                                                 what="quality gallery"),
                f"{title}: {issue} (lowest scores)", [[c for _, c in r] for r in grid])
    pairs = report.pairs.head(GALLERY_PAIRS * 4)
    shown_pairs = []
    for a, b, kind, d in zip(pairs["row_a"], pairs["row_b"], pairs["kind"], pairs["distance"]):
        if not (plain[a] and plain[b]):
            continue
        ta, tb = _thumbnail(rows["path"].iat[a]), _thumbnail(rows["path"].iat[b])
        if ta is not None and tb is not None:
            shown_pairs.append(([ta, tb], [rows["source_key"].iat[a][-24:],
                                           f"{rows['source_key'].iat[b][-16:]} ({kind} {d})"]))
        if len(shown_pairs) == GALLERY_PAIRS:
            break
    if shown_pairs:
        written["duplicates"] = image_grid_picture(
            [p for p, _ in shown_pairs], ["image", "its duplicate"],
            contained(folder, "duplicates.png", what="quality gallery"),
            f"{title}: duplicate pairs", [c for _, c in shown_pairs])
    return written
