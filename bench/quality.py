"""Benchmark: image quality signals and duplicates, ours against cleanvision, side by side.

A generated set (cached under /tmp) of photo-like 640x480 JPEGs: clean images, and planted
issues of known truth - exact copies, near duplicates (re-encoded at quality 60, resized to
half, cropped by 1% a side, brightened by 15%), blurred, darkened, washed out, grey,
flattened (low information) and stretched to an odd aspect ratio. Both tools read the same
folder, one core each:

- ours: ml.verify at level decode with signals (the pass verification already makes: a
  1/8-scale JPEG draft of at least 64 px a side, sha256, the signals), then ml.quality's
  issues and duplicate groups; the same verification without signals is timed too,
  alternated with it ROUNDS times, for the signals' extra cost (the median of the rounds'
  ratios: 7 rounds still swung by 4 points between runs);
- cleanvision 0.3.7 (Imagelab.find_issues, n_jobs=1), run in its own venv (never in the
  runtime): `make bench-quality` creates .bench-venvs/cleanvision; CLEANVISION_PYTHON points
  elsewhere.

Per issue both tools share, recall and precision against the planted truth; near duplicates
as pairs (a planted copy and its original in one group). images/s per core of each. Leakage:
the planted set split 50/25/25 by sample (group_duplicates off) and the duplicate pairs that
cross splits counted. The last line is one JSON object with the keys ours_ips_per_core,
cleanvision_ips_per_core, speed_ratio, near_dup_recall, near_dup_precision,
min_issue_recall_vs_cleanvision, leakage_pairs_found (and the rest).

Run from the repo root: .venv/bin/python bench/quality.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from demo.synthetic_photos import photo_like, write_photo_jpegs  # noqa: E402
from ml.imageio import read_header  # noqa: E402
from ml.quality.issues import ISSUES, QualityConfig, flag_issues, issue_scores  # noqa: E402
from ml.quality.leakage import (cross_split_pairs, duplicate_components,  # noqa: E402
                                duplicate_pairs, find_duplicates)
from ml.splits import SplitSpec, assign_splits  # noqa: E402
from ml.verify import VerifyConfig, verify_catalog  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "imageds-bench-quality-v1"
CLEAN, PER_ISSUE, PER_NEAR_KIND, EXACT = 300, 20, 20, 20
BIG_PHOTOS, BIG_SIZE = 100, (1920, 1280)        # the signals' cost on camera-sized photos
SIZE = (640, 480)
NEAR_KINDS = ("reencoded", "resized", "cropped", "brightened")
PLANTED_ISSUES = ("blurry", "dark", "light", "grayscale", "low_information", "odd_aspect_ratio")
CLEANVISION_PYTHON = os.environ.get("CLEANVISION_PYTHON",
                                    str(REPO / ".bench-venvs" / "cleanvision" / "bin" / "python"))


def _save(image: Image.Image, path: Path, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=quality)


def planted_set(root: Path) -> dict:
    """Write the set (once) and return its truth: issues per file, duplicate pairs."""
    truth_file = root / "truth.json"
    if truth_file.exists():
        return json.loads(truth_file.read_text())
    images = root / "images"
    issues: dict[str, list[str]] = {}
    pairs: list[tuple[str, str, str]] = []
    for i in range(CLEAN):
        _save(photo_like(*SIZE, seed=i), images / f"clean_{i:04d}.jpg")
        issues[f"clean_{i:04d}.jpg"] = []
    seed = 10_000
    for k in range(EXACT):
        original = f"clean_{k:04d}.jpg"
        copy = f"exact_{k:03d}.jpg"
        (images / copy).write_bytes((images / original).read_bytes())
        issues[copy] = []
        pairs.append((original, copy, "exact"))
    for j, kind in enumerate(NEAR_KINDS):
        for k in range(PER_NEAR_KIND):
            original = f"clean_{100 + j * PER_NEAR_KIND + k:04d}.jpg"
            base = Image.open(images / original).convert("RGB")
            copy = f"near_{kind}_{k:03d}.jpg"
            if kind == "reencoded":
                _save(base, images / copy, quality=60)
            elif kind == "resized":
                _save(base.resize((SIZE[0] // 2, SIZE[1] // 2), Image.Resampling.LANCZOS),
                      images / copy)
            elif kind == "cropped":
                dx, dy = SIZE[0] // 100, SIZE[1] // 100
                _save(base.crop((dx, dy, SIZE[0] - dx, SIZE[1] - dy)), images / copy)
            else:
                _save(ImageEnhance.Brightness(base).enhance(1.15), images / copy)
            issues[copy] = []
            pairs.append((original, copy, "near"))
    for issue in PLANTED_ISSUES:
        for k in range(PER_ISSUE):
            seed += 1
            base = photo_like(*SIZE, seed=seed)
            if issue == "blurry":
                image = base.filter(ImageFilter.GaussianBlur(8))
            elif issue == "dark":
                image = ImageEnhance.Brightness(base).enhance(0.12)
            elif issue == "light":
                image = Image.blend(base, Image.new("RGB", SIZE, "white"), 0.93)
            elif issue == "grayscale":
                image = base.convert("L").convert("RGB")
            elif issue == "low_information":
                rng = np.random.default_rng(seed)
                flat = np.full((SIZE[1], SIZE[0], 3), rng.integers(40, 200, 3), np.float32)
                image = Image.fromarray(np.clip(flat + rng.normal(0, 1.5, flat.shape), 0, 255)
                                        .astype(np.uint8))
            else:
                image = base.resize((SIZE[0], SIZE[1] // 5))
            name = f"{issue}_{k:03d}.jpg"
            _save(image, images / name)
            issues[name] = [issue]
    truth = {"issues": issues, "pairs": pairs}
    truth_file.write_text(json.dumps(truth))
    return truth


def catalog(root: Path, names: list[str]) -> pd.DataFrame:
    paths = [str(root / "images" / n) for n in names]
    sizes = [read_header(p) for p in paths]
    return pd.DataFrame({"sample_id": names, "source_key": names, "path": paths, "member": "",
                         "label": "x", "status": "ok", "used": True,
                         "index_in_source": range(len(names)),
                         "width": [h.width for h in sizes], "height": [h.height for h in sizes]})


def ours(root: Path, names: list[str], signals: bool) -> tuple[float, pd.DataFrame]:
    frame = catalog(root, names)
    config = VerifyConfig(level="decode", num_workers=1, log_missing=False, signals=signals)
    start = time.perf_counter()
    found = verify_catalog(frame, images_dir=str(root / "images"), config=config,
                           checksum_db=None).per_sample
    table = pd.concat([frame, found.drop(columns=["sample_id"])], axis=1)
    if signals:
        table = table.assign(**issue_scores(table).add_suffix("_score"))
    return time.perf_counter() - start, table


ROUNDS = 15


def signals_cost(root: Path, names: list[str]) -> tuple[float, float, float, pd.DataFrame]:
    """The verification without and with signals, alternated ROUNDS times: the median of each
    and the median of the rounds' extra cost (a busy neighbour slows both runs of a round)."""
    plain, signals, table = [], [], None
    for _ in range(ROUNDS):
        plain.append(ours(root, names, signals=False)[0])
        seconds, table = ours(root, names, signals=True)
        signals.append(seconds)
    extra = float(np.median(np.array(signals) / np.array(plain) - 1))
    return float(np.median(plain)), float(np.median(signals)), extra, table


CLEANVISION_RUN = """
import json, sys, time
from cleanvision import Imagelab
start = time.perf_counter()
lab = Imagelab(data_path=sys.argv[1])
lab.find_issues(n_jobs=1, verbose=False)
seconds = time.perf_counter() - start
issues = {}
for path, row in lab.issues.iterrows():
    issues[path.rsplit('/', 1)[-1]] = [c[3:-6] for c in lab.issues.columns
                                       if c.startswith('is_') and row[c]]
sets = {k: [[p.rsplit('/', 1)[-1] for p in s] for s in lab.info[k]['sets']]
        for k in ('exact_duplicates', 'near_duplicates')}
print(json.dumps({'seconds': seconds, 'issues': issues, **sets}))
"""


def cleanvision(root: Path) -> dict | None:
    if not Path(CLEANVISION_PYTHON).exists():
        print(f"cleanvision's venv not found ({CLEANVISION_PYTHON}): run `make bench-quality`")
        return None
    out = subprocess.run([CLEANVISION_PYTHON, "-c", CLEANVISION_RUN, str(root / "images")],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def recall_precision(predicted: set[str], actual: set[str]) -> tuple[float, float]:
    hit = len(predicted & actual)
    return (hit / len(actual) if actual else float("nan"),
            hit / len(predicted) if predicted else 1.0)


def pair_scores(groups: list[set[str]], truth_pairs: list,
                kind: str | None) -> tuple[float, float]:
    """Recall: planted pairs (of `kind`) found in one group; precision: of the predicted pairs
    (within groups), those that are planted pairs."""
    wanted = {frozenset((a, b)) for a, b, k in truth_pairs if kind is None or k == kind}
    every_planted = {frozenset((a, b)) for a, b, _ in truth_pairs}
    predicted = {frozenset((a, b)) for g in groups for a in g for b in g if a < b}
    recall = len(predicted & wanted) / len(wanted) if wanted else float("nan")
    precision = len(predicted & every_planted) / len(predicted) if predicted else 1.0
    return recall, precision


def main() -> dict:
    truth = planted_set(CACHE)
    names = sorted(truth["issues"])
    ours(CACHE, names, signals=True)                   # warms the page cache
    plain_s, ours_s, extra, table = signals_cost(CACHE, names)
    config = QualityConfig()
    flags = flag_issues(table[[f"{i}_score" for i in ISSUES]].rename(
        columns=lambda c: c[:-6]), config)
    groups_found = find_duplicates(table, config)
    our_pairs = duplicate_pairs(groups_found)
    labels = duplicate_components(len(names), our_pairs)
    our_groups = [set(np.array(names)[labels == g]) for g in np.unique(labels[labels >= 0])]

    result: dict = {"images": len(names), "ours_seconds": round(ours_s, 2),
                    "ours_without_signals_seconds": round(plain_s, 2),
                    "signals_extra_cost": round(extra, 3)}
    result["ours_ips_per_core"] = round(len(names) / ours_s, 1)
    big = CACHE / "big"
    big_names = [p.name for p in sorted((big / "images").glob("*.jpg"))] if (big / "images").is_dir() else []
    if len(big_names) < BIG_PHOTOS:
        shutil.rmtree(big, ignore_errors=True)
        write_photo_jpegs(big / "images", BIG_PHOTOS, *BIG_SIZE)
        big_names = [p.name for p in sorted((big / "images").glob("*.jpg"))]
    ours(big, big_names, signals=True)                   # warm the page cache
    result["signals_extra_cost_1920x1280"] = round(signals_cost(big, big_names)[2], 3)
    near_r, near_p = pair_scores(our_groups, truth["pairs"], "near")
    exact_r, exact_p = pair_scores(our_groups, truth["pairs"], "exact")
    result.update(near_dup_recall=round(near_r, 3), near_dup_precision=round(near_p, 3),
                  exact_dup_recall=round(exact_r, 3), exact_dup_precision=round(exact_p, 3))
    per_kind = {}
    for kind in NEAR_KINDS:
        kind_pairs = [p for p in truth["pairs"] if p[1].startswith(f"near_{kind}")]
        per_kind[kind] = round(pair_scores(our_groups, kind_pairs, None)[0], 3)
    result["near_dup_recall_by_kind"] = per_kind
    ours_issue = {}
    for issue in PLANTED_ISSUES:
        actual = {n for n, i in truth["issues"].items() if issue in i}
        predicted = set(np.array(names)[flags[issue].to_numpy()])
        ours_issue[issue] = [round(v, 3) for v in recall_precision(predicted, actual)]
        wrong = sorted(predicted - actual)
        if wrong:
            print(f"ours {issue}: {len(wrong)} not planted: {', '.join(wrong[:6])}")
    result["ours_recall_precision"] = ours_issue

    frame = table.assign(label="x", group_kind="sample", group_id=table["sample_id"])
    spec = SplitSpec(ratios=(0.5, 0.25, 0.25), group_duplicates=False)
    frame = frame.assign(split=assign_splits(frame, spec))
    result["leakage_pairs_found"] = len(cross_split_pairs(frame, our_pairs))
    planted_crossing = sum(1 for a, b, _ in truth["pairs"]
                           if frame["split"].iat[names.index(a)] != frame["split"].iat[names.index(b)])
    result["leakage_pairs_planted"] = planted_crossing

    theirs = cleanvision(CACHE)
    if theirs is not None:
        result["cleanvision_seconds"] = round(theirs["seconds"], 2)
        result["cleanvision_ips_per_core"] = round(len(names) / theirs["seconds"], 1)
        result["speed_ratio"] = round(result["ours_ips_per_core"] / result["cleanvision_ips_per_core"], 2)
        their_issue = {}
        for issue in PLANTED_ISSUES:
            actual = {n for n, i in truth["issues"].items() if issue in i}
            predicted = {n for n, i in theirs["issues"].items() if issue in i}
            their_issue[issue] = [round(v, 3) for v in recall_precision(predicted, actual)]
        result["cleanvision_recall_precision"] = their_issue
        their_groups = [set(s) for s in theirs["near_duplicates"] + theirs["exact_duplicates"]]
        cr, cp = pair_scores(their_groups, truth["pairs"], "near")
        result.update(cleanvision_near_dup_recall=round(cr, 3),
                      cleanvision_near_dup_precision=round(cp, 3))
        result["min_issue_recall_vs_cleanvision"] = round(min(
            ours_issue[i][0] - their_issue[i][0] for i in PLANTED_ISSUES), 3)
    for key in ("ours_recall_precision", "cleanvision_recall_precision"):
        for issue, (r, p) in result.get(key, {}).items():
            print(f"{key.split('_')[0]:12} {issue:18} recall {r:.2f} precision {p:.2f}")
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
