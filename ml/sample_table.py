"""The sample table, narrowed stage by stage (ml/sample_status.py has its vocabulary).

The catalog is the table's first form: one row per declared sample. Verification adds its
findings to every row (`detail`, `sha256`; `status`, `reason` and `dropped_by` where it finds a
sample bad that the catalog had not dropped). Resize takes the rows still going on that the
dataset uses, and adds the resized `file`, its `width` and `height`, and what was done
(`resize`: resized | unchanged), dropping the ones it fails on. Splits take the rows resize
kept. Each stage reads only its parent's table: nothing is joined back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.imageio import MISSING as MISSING_REASON
from ml.sample_status import CORRUPT, MISSING, OK, RESIZE, VERIFICATION

VERIFY_COLUMNS = ("detail", "sha256")          # what verification adds to the catalog's
RESIZE_COLUMNS = ("file", "resize")            # what resize adds (width, height replaced)


def going_on(table: pd.DataFrame) -> np.ndarray:
    """The rows no stage has dropped."""
    return (table["dropped_by"] == "").to_numpy()


def verified(catalog: pd.DataFrame, findings: pd.DataFrame) -> pd.DataFrame:
    """The catalog with verification's `findings` (ml.verify's per-sample frame, in catalog
    order): the check's detail and sha256 on every row, and status, reason and dropped_by
    'verification_report' on rows it found bad that no earlier stage dropped."""
    table = catalog.reset_index(drop=True)
    if len(findings) != len(table) or not (findings["sample_id"].to_numpy()
                                           == table["sample_id"].to_numpy()).all():
        raise ValueError("verification findings are not aligned with the catalog")
    newly_bad = going_on(table) & (findings["verify_status"] != OK).to_numpy()
    table = table.assign(detail=findings["detail"].to_numpy(),
                         sha256=findings["sha256"].to_numpy())
    return _dropped(table, newly_bad, findings["verify_status"].to_numpy(),
                    findings["reason"].to_numpy(), VERIFICATION)


def kept_for_resize(table: pd.DataFrame) -> pd.DataFrame:
    """The rows resize works on: going on, and used by the dataset."""
    return table.loc[going_on(table) & table["used"].to_numpy(bool)].reset_index(drop=True)


def resized(rows: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """`rows` (kept_for_resize's) with stage_resize's `outcomes` (same order): the resized
    file and its size, `resize` resized | unchanged, and the failures dropped."""
    failed = (outcomes["status"] == "failed").to_numpy()
    reason = outcomes["reason"].to_numpy()
    status = np.where(reason == MISSING_REASON, MISSING, CORRUPT)
    table = rows.assign(width=outcomes["width"].to_numpy(), height=outcomes["height"].to_numpy(),
                        file=outcomes["output"].to_numpy(),
                        resize=np.where(failed, "", outcomes["status"].to_numpy()))
    return _dropped(table, failed, status, reason, RESIZE)


def _dropped(table: pd.DataFrame, where: np.ndarray, status: np.ndarray, reason: np.ndarray,
             stage: str) -> pd.DataFrame:
    """`table` with the rows at `where` given that status and reason, dropped by `stage`."""
    if not where.any():
        return table
    index = table.index
    return table.assign(
        status=table["status"].mask(where, pd.Series(status, index=index).astype(str)),
        reason=table["reason"].mask(where, pd.Series(reason, index=index).astype(str)),
        dropped_by=table["dropped_by"].mask(where, stage))
