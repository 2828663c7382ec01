"""Seed 000's JSON report of what the checks found, the thresholds' verdict, and the log lines."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np

from ml.atomic import atomic_write_text, remove_stale_temps
from ml.checksums import now_text
from ml.errors import ConfigError
from ml.sample_status import CORRUPT, INVALID, MISSING as MISSING_STATUS, STATUSES
from ml.verify.checks import Findings, Rows
from ml.verify.config import VerifyConfig

LOGGED_EXAMPLES = 10
Log = Callable[[str], None]


def _counts(codes: np.ndarray) -> dict:
    ok, missing, corrupt, invalid = (int(c) for c in np.bincount(codes, minlength=4))
    total = len(codes)
    bad = missing + corrupt + invalid
    return {"total": total, "missing_count": missing, "corrupt_count": corrupt,
            "invalid_count": invalid, "bad_ratio": bad / total if total else 0.0}


def within_thresholds(bad: int, total: int, config: VerifyConfig) -> tuple[bool, str]:
    """Seed 000's gate: bad images may exceed neither the ratio nor the count (the limit passes)."""
    ratio = bad / total if total else 0.0
    over = []
    if ratio > config.max_missing_ratio + 1e-12:
        over.append(f"ratio {ratio:.4%} > {config.max_missing_ratio:.4%}")
    if bad > config.max_missing_count:
        over.append(f"count {bad} > {config.max_missing_count}")
    return not over, "; ".join(over)


def _used_positions(rows: Rows, found: Findings, status: str) -> np.ndarray:
    """Used rows with that status, in label-file order."""
    sel = np.flatnonzero(rows.used & (found.code == STATUSES.index(status)))
    return sel[np.argsort(rows.index_in_source[sel], kind="stable")]


# Keys every report of ours has (seed 000's plus our own): how an earlier report is recognised
# before it is replaced (a file without them is someone else's and is never overwritten).
REPORT_MARK_KEYS = frozenset({"total_images_checked", "missing_identifiers", "check_level",
                              "used_subset"})


def build_report(rows: Rows, found: Findings, images_dir: str, config: VerifyConfig,
                  level: str) -> tuple[dict, bool, str]:
    used = _counts(found.code[rows.used])
    bad = used["missing_count"] + used["corrupt_count"] + used["invalid_count"]
    passed, over = within_thresholds(bad, used["total"], config)
    missing, corrupt, invalid = (_used_positions(rows, found, s)
                                 for s in (MISSING_STATUS, CORRUPT, INVALID))
    report = {
        "total_images_checked": used["total"],
        "missing_count": used["missing_count"],
        "missing_ratio": used["missing_count"] / used["total"] if used["total"] else 0.0,
        "images_dir": str(images_dir),
        "verification_timestamp": now_text(),
        "missing_identifiers": rows.source_keys.iloc[missing].tolist(),
        "missing_indices": rows.index_in_source[missing].tolist(),
        "corrupt_count": used["corrupt_count"],
        "corrupt": [{"identifier": rows.source_keys.iat[p],
                     "index": int(rows.index_in_source[p]),
                     "reason": found.reason[p], "detail": found.detail[p]} for p in corrupt],
        "invalid_identifiers": rows.source_keys.iloc[invalid].tolist(),
        "invalid_count": used["invalid_count"],
        "thresholds": {"max_missing_ratio": config.max_missing_ratio,
                       "max_missing_count": config.max_missing_count},
        "check_level": level,
        "passed": passed,
        "whole_label_file": _counts(found.code),
        "used_subset": used,
    }
    return report, passed, _message(report, level, bad, passed, over)


def _message(report: dict, level: str, bad: int, passed: bool, over: str) -> str:
    used, whole, limits = report["used_subset"], report["whole_label_file"], report["thresholds"]
    verdict = "passed" if passed else f"FAILED ({over})"
    return (f"image verification ({level}) of {used['total']} used images "
            f"({whole['total']} in the label file): {used['missing_count']} missing, "
            f"{used['corrupt_count']} corrupt, {used['invalid_count']} invalid = {bad} bad "
            f"({used['bad_ratio']:.4%}); thresholds: at most {limits['max_missing_ratio']:.4%} "
            f"and at most {limits['max_missing_count']} images: {verdict}")


def log_problems(rows: Rows, found: Findings, log: Log) -> None:
    """A few identifiers and a count per kind of problem, never thousands of lines."""
    n_used = int(rows.used.sum())
    for status in (MISSING_STATUS, CORRUPT, INVALID):
        sel = _used_positions(rows, found, status)
        if len(sel) == 0:
            continue
        shown = ", ".join(rows.source_keys.iat[p] if status == MISSING_STATUS
                          else f"{rows.source_keys.iat[p]} ({found.reason[p]}: {found.detail[p]})"
                          for p in sel[:LOGGED_EXAMPLES])
        more = f" and {len(sel) - LOGGED_EXAMPLES} more" if len(sel) > LOGGED_EXAMPLES else ""
        log(f"{len(sel)} of {n_used} used images are {status}: {shown}{more}")


def write_report(report: dict, path: Path) -> None:
    """Write the JSON report atomically (temp sibling, then rename); an existing file there is
    replaced only when it is an earlier report."""
    if os.path.lexists(path) and not is_report(path):
        raise ConfigError(f"{path} exists and is not a verification report; it is never "
                          "replaced: move it away or set verify.report_path to another file")
    remove_stale_temps(path)
    atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def is_report(path: str | os.PathLike) -> bool:
    """True when `path` is a regular file holding a report this project wrote."""
    p = Path(path)
    if p.is_symlink() or not p.is_file() or p.stat().st_size > 64 * 2 ** 20:
        return False
    try:
        doc = json.loads(p.read_bytes())
    except (ValueError, OSError):
        return False
    return isinstance(doc, dict) and REPORT_MARK_KEYS <= doc.keys()


_PLACEHOLDER = re.compile(r"\{[A-Za-z_]\w*\}")


def resolve_report_path(template: str, output_dir: Path) -> Path:
    """Seed 000's REPORT_PATH: `{output_dir}` is replaced; a relative result lies in output_dir."""
    text = template.replace("{output_dir}", str(output_dir))
    unknown = _PLACEHOLDER.findall(text)
    if unknown:
        raise ConfigError(f"report_path {template!r} uses {', '.join(unknown)}; only "
                          "{output_dir} is replaced")
    path = Path(text)
    return path if path.is_absolute() else Path(output_dir) / path
