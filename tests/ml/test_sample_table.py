"""The sample table narrowed stage by stage: one status vocabulary and the first stage that
dropped each sample, on one row, past Arrow's chunk size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.sample_table import for_resize, resized_columns, verified_columns, with_files

N = 140_000          # read back from Parquet in chunks of 131,072


def catalog_of(n: int) -> pd.DataFrame:
    status = np.full(n, "ok", dtype=object)
    status[::1000] = "corrupt"                               # the catalog's bad headers
    return pd.DataFrame({
        "sample_id": [f"s{i:06d}" for i in range(n)], "label": [f"c{i % 7}" for i in range(n)],
        "width": 640, "height": 480, "status": status,
        "reason": np.where(status == "ok", "", "truncated").astype(object),
        "dropped_by": np.where(status == "ok", "", "catalog").astype(object),
        "used": np.arange(n) % 500 != 1})


def test_each_sample_keeps_the_first_stage_that_dropped_it(tmp_path):
    catalog_of(N).to_parquet(tmp_path / "catalog.parquet")
    catalog = pd.read_parquet(tmp_path / "catalog.parquet")
    verify_status = np.where(np.arange(N) % 700 == 0, "missing", "ok")   # 0 also the catalog's
    findings = pd.DataFrame({"sample_id": catalog["sample_id"], "verify_status": verify_status,
                             "reason": np.where(verify_status == "ok", "", "missing"),
                             "detail": "", "sha256": "ab" * 32})
    table = catalog.assign(**verified_columns(catalog, findings))
    assert table.loc[0, ["status", "dropped_by"]].tolist() == ["corrupt", "catalog"]
    assert table.loc[700, ["status", "reason", "dropped_by"]].tolist() == \
        ["missing", "missing", "verification_report"]
    assert (table["sha256"] == "ab" * 32).all() and len(table) == N

    todo = for_resize(table)
    expected = [i for i in range(N) if i % 1000 and i % 700 and i % 500 != 1]
    assert np.flatnonzero(todo).tolist() == expected
    n = len(expected)
    failed = np.arange(n) % 9000 == 5
    outcomes = pd.DataFrame({"sample_id": table.loc[todo, "sample_id"].to_numpy(),
                             "output": np.where(failed, "", "/out/x.jpg"),
                             "width": np.where(failed, 0, 32), "height": np.where(failed, 0, 24),
                             "status": np.where(failed, "failed", "resized"),
                             "reason": np.where(failed, "not an image", "")})
    done = table.assign(**resized_columns(table, todo, outcomes))
    assert len(done) == N                                    # every sample, marked not removed
    at = np.flatnonzero(todo)
    assert done.loc[at[failed], "dropped_by"].eq("resized").all()
    assert done.loc[at[failed], "status"].eq("corrupt").all()
    made = with_files(done)
    assert np.flatnonzero(made).tolist() == at[~failed].tolist()
    assert done.loc[made, ["width", "height"]].drop_duplicates().values.tolist() == [[32, 24]]
    assert done.loc[~made, "width"].isna().all() and (done.loc[~made, "file"] == "").all()
    assert set(done.loc[made, "resize"]) == {"resized"}
    assert done.loc[0, "dropped_by"] == "catalog" and done.loc[700, "dropped_by"] == \
        "verification_report"
    assert done.loc[1, "dropped_by"] == "" and not done.loc[1, "used"]  # unused: not dropped


def test_findings_out_of_line_with_the_catalog_are_refused():
    catalog = catalog_of(10)
    findings = pd.DataFrame({"sample_id": catalog["sample_id"][::-1], "verify_status": "ok",
                             "reason": "", "detail": "", "sha256": ""})
    with pytest.raises(ValueError, match="not aligned"):
        verified_columns(catalog, findings)
