"""The sample table, narrowed stage by stage (ml/sample_status.py has its vocabulary).

The catalog is the table's first form: one row per declared sample. Verification adds its
findings to every row (`detail`, `sha256`, and at level decode the quality signals of
ml/quality/signals.py; `status`, `reason` and `dropped_by` where it finds a
sample bad that the catalog had not dropped). Resize works on the rows still going on that the
dataset uses and adds, on every row, the resized `file` and what was done (`resize`: resized |
unchanged; '' for a row it did not resize), with `width` and `height` now those of the file
(none where there is no file), dropping the ones it fails on. Splits take the rows that have a
file and are still going on. Each stage reads only its parent's table (nothing is joined back)
and narrows it by marking, not by copying: the rows a stage drops stay, with `dropped_by`
saying which stage stopped them, so the resized table answers "where did my sample go" for
every declared sample, and no stage holds two copies of a million-row table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml.columns import text_column
from ml.imageio import MISSING as MISSING_REASON
from ml.quality.signals import SIGNAL_COLUMNS
from ml.sample_status import CORRUPT, MISSING, OK, RESIZE, VERIFICATION

VERIFY_COLUMNS = ("detail", "sha256")          # what verification adds to the catalog's
VERIFY_READS = ("sample_id", "source_key", "path", "member", "used", "index_in_source",
                "status", "reason", "dropped_by")   # the catalog columns verification reads
RESIZE_COLUMNS = ("file", "resize")            # what resize adds (width, height replaced)
RESIZE_READS = ("sample_id", "source_key", "path", "member", "used", "status", "reason",
                "dropped_by")                    # the verified table's columns resize reads
SPLITS_READS = ("sample_id", "source_key", "label", "group_id", "group_kind", "used",
                "dropped_by", "width", "height", "file", "sha256",
                *SIGNAL_COLUMNS)                 # the resized table's columns splits read
CHART_READS = ("sample_id", "split", "label", "file", "width", "height",
               *SIGNAL_COLUMNS)     # what splits' counts, charts and link tree read of them


def going_on(table: pd.DataFrame) -> np.ndarray:
    """The rows no stage has dropped."""
    return (table["dropped_by"] == "").to_numpy()


def verified_columns(catalog: pd.DataFrame, findings: pd.DataFrame) -> dict[str, object]:
    """The columns verification sets on the catalog (VERIFY_READS of it are enough), by name,
    from its `findings` (ml.verify's per-sample frame, in catalog order): the check's detail
    and sha256 on every row, and status, reason and dropped_by 'verification_report' on rows it
    found bad that no earlier stage dropped. The stage writes them as an edit of the catalog."""
    table = catalog.reset_index(drop=True)
    if len(findings) != len(table) or not text_column(findings["sample_id"]).equals(
            text_column(table["sample_id"])):
        raise ValueError("verification findings are not aligned with the catalog")
    status = text_column(findings["verify_status"])
    newly_bad = going_on(table) & pc.not_equal(status, OK).to_numpy(zero_copy_only=False)
    columns = {"detail": findings["detail"].array, "sha256": findings["sha256"].array,
               **{name: findings[name].array for name in SIGNAL_COLUMNS
                  if name in findings.columns}}
    columns.update(_drop_columns(table, newly_bad, status, text_column(findings["reason"]),
                                 VERIFICATION))
    return columns


def for_resize(table: pd.DataFrame) -> np.ndarray:
    """The rows resize works on: going on, and used by the dataset."""
    return going_on(table) & table["used"].to_numpy(bool)


def with_files(table: pd.DataFrame) -> np.ndarray:
    """The rows that made it through resize: going on, with a resized file."""
    return for_resize(table) & (table["file"] != "").to_numpy()


def resized_columns(table: pd.DataFrame, done: np.ndarray,
                    outcomes: pd.DataFrame) -> dict[str, object]:
    """The columns resize sets on the verified table (status, reason and dropped_by of it are
    enough), by name, from stage_resize's `outcomes` for the rows at `done` (a mask; the
    outcomes in the order of those rows): their file, its width and height, `resize` resized |
    unchanged, and the failures dropped. Other rows keep no file and no size. Columns are
    spread onto the table's rows by one Arrow take each (no Python object per row)."""
    n = len(table)
    source = np.full(n, -1, np.int64)                   # each row's outcome, -1: none
    source[done] = np.arange(int(done.sum()))
    at = pa.array(source, mask=source < 0)

    def spread(column: str) -> pa.Array:
        return text_column(outcomes[column]).take(at)

    failed_at = pc.fill_null(pc.equal(spread("status"), "failed"), False).to_numpy(
        zero_copy_only=False)
    made = done & ~failed_at
    sizes = {side: pd.arrays.IntegerArray(
        np.where(made, np.asarray(outcomes[side].to_numpy(np.int64))[np.maximum(source, 0)], 0)
        if len(outcomes) else np.zeros(n, np.int64), ~made) for side in ("width", "height")}
    resize = pc.if_else(pa.array(made), spread("status"), "")
    reason = spread("reason").fill_null("")
    status = pc.if_else(pc.equal(reason, MISSING_REASON), MISSING, CORRUPT)
    file = (outcomes["output"].fillna("").reset_index(drop=True) if done.all()   # every row
            else spread("output").fill_null("").to_pandas())     # resized: no copy of its paths
    return {**sizes, "file": file, "resize": resize.to_pandas(),
            **_drop_columns(table, failed_at, status, reason, RESIZE)}


def _drop_columns(table: pd.DataFrame, where: np.ndarray, status, reason,
                  stage: str) -> dict[str, pd.Series]:
    """`table`'s status, reason and dropped_by with the rows at `where` given that status and
    reason (columns over all rows, numpy or Arrow; only the dropped rows' values are read),
    dropped by `stage`; none when nothing is dropped."""
    if not where.any():
        return {}
    rows = np.flatnonzero(where)
    columns = {}
    for name, values in (("status", status), ("reason", reason), ("dropped_by", None)):
        column = table[name].copy()
        picked = ([stage] * len(rows) if values is None else
                  values.take(pa.array(rows)).to_pylist() if isinstance(values, pa.Array)
                  else np.asarray(values, dtype=object)[rows].tolist())
        column.iloc[rows] = picked
        columns[name] = column
    return columns
