"""Image verification: which declared samples are missing, corrupt or invalid, and may we go on?

Seed 000 checked every image of the label file with one `os.path.exists` per file and gated on
the whole label file. Here:
- existence comes from ONE listing per folder (set membership of names, vectorized over the
  catalog with Arrow) and one key listing per HDF5 container, never a stat per file;
- the `decode` level really decodes each present image (JPEGs at 1/8 scale through the DCT draft,
  which still entropy-decodes every byte), because `Image.verify()` passes truncated JPEGs;
  decompression bombs are refused from the header before any pixel is decoded (ml.imageio);
- a checksum registry (ml.checksums) records each good file's sha256 the first time it is seen,
  so a later run catches files that changed or were garbled but still decode;
- the thresholds gate on the samples the dataset USES; the whole label file is reported beside.
Verification only reads: it never writes into the images folder.

Modules: config (the options), checks (per-row work), report (the JSON report and the
verdict); verify_catalog below runs them.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ml.checksums import ChecksumRegistry
from ml.progress import Progress
from ml.quality.signals import SignalColumns
from ml.sample_status import OK
from ml.verify.checks import (Findings, Listings, Rows, invalid_rows, prefix_folder,
                              root_prefix, run_checks)
from ml.verify.config import LEVELS, VerifyConfig
from ml.verify.report import (Log, build_report, is_report, log_problems, resolve_report_path,
                              within_thresholds, write_report)


@dataclass
class VerificationResult:
    """What verification found: one row per catalog sample, the JSON report, and the verdict.

    per_sample columns: sample_id, verify_status ('ok' | 'missing' | 'corrupt' | 'invalid'),
    reason (one of ml.imageio.REASONS, or 'invalid path'), detail, sha256 ('' when not read).
    """

    per_sample: pd.DataFrame
    report: dict
    passed: bool
    message: str

    def bad_sample_ids(self) -> set[str]:
        """Every sample (used or not) that is missing, corrupt or invalid."""
        bad = self.per_sample["verify_status"] != OK
        return set(self.per_sample.loc[bad, "sample_id"])


@contextlib.contextmanager
def listing_ahead(images_dir: str | Path, config: VerifyConfig) -> Iterator[Listings]:
    """Folder listings on a background thread, the images folder's begun at once (most layouts
    keep their files there): enter it before reading the catalog and hand it to
    `verify_catalog`, and the listing (0.12 s for seed 000's 366,858 names) runs while the
    catalog is read and its rows prepared."""
    with ThreadPoolExecutor(1, thread_name_prefix="listing") as pool:
        listings = Listings(pool)
        if config.enabled:
            listings.prefetch(prefix_folder(root_prefix(str(images_dir))), as_arrow=True)
        yield listings


def verify_catalog(catalog: pd.DataFrame, *, images_dir: str, config: VerifyConfig,
                   checksum_db: Path | ChecksumRegistry | None,
                   progress: Progress | None = None, log: Log | None = None,
                   accept_changes: bool = False,
                   listings: Listings | None = None) -> VerificationResult:
    """Check every catalog row (missing / corrupt / invalid) and gate on the used subset.

    Rows with status 'invalid_path', an empty path, or (plain files) a path outside
    `images_dir` are reported invalid and never opened. `checksum_db` (a path or an open
    ChecksumRegistry) enables change detection; `accept_changes` re-baselines changed files.
    With `config.enabled` false nothing is read (check_level 'disabled'). `listings`: from
    `listing_ahead` (entered before the catalog was read), else started here.
    """
    log = log or logging.getLogger(__name__).info
    with contextlib.ExitStack() as stack:
        if listings is None:
            listings = stack.enter_context(listing_ahead(images_dir, config))
        rows = Rows.of(catalog)
        found = Findings(len(catalog))
        invalid = invalid_rows(catalog, rows, images_dir, found)
        if config.enabled and config.level == "decode" and config.signals:
            found.signals = SignalColumns(len(catalog))
        if config.enabled:
            run_checks(np.flatnonzero(~invalid), rows, found, config, images_dir, checksum_db,
                       progress, accept_changes, listings)
    level = config.level if config.enabled else "disabled"
    report, passed, message = build_report(rows, found, images_dir, config, level)
    if config.log_missing:
        log_problems(rows, found, log)
    per_sample = pd.DataFrame({
        "sample_id": catalog["sample_id"].astype(str).reset_index(drop=True),
        "verify_status": found.statuses().to_pandas(),
        "reason": found.text(found.reason).to_pandas(),
        "detail": found.text(found.detail).to_pandas(),
        "sha256": found.sha256_column().to_pandas(),
        **(found.signals.columns() if found.signals is not None else {}),
    }, copy=False)        # a dict's columns are otherwise copied (and numbers stacked: +50 MB)
    return VerificationResult(per_sample=per_sample, report=report, passed=passed,
                              message=message)


__all__ = ["LEVELS", "VerificationResult", "VerifyConfig", "is_report", "listing_ahead",
           "resolve_report_path", "verify_catalog", "within_thresholds", "write_report"]
