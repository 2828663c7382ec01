"""A stage's output written as an edit of its parent's stored table: streamed in batches, it
lands on disk exactly as the whole edited frame written at once would (columns, values, pandas
types), holds one batch at a time, and is published whole or not at all."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml import stored_table
from ml.stored_table import StoredTable, TableEdit

ROWS = 200_000          # past the 131,072 rows at which Parquet reads come back in chunks


def _parent(n: int, offset: int = 0) -> pd.DataFrame:
    i = np.arange(offset, offset + n)
    return pd.DataFrame({
        "sample_id": pd.Series([f"s{k}" for k in i], dtype="str"),
        "status": pd.Series(["ok"] * n, dtype="str"),
        "width": pd.array(np.where(i % 7 == 0, 0, i % 300), dtype="Int64").astype("Int64"),
        "used": i % 5 != 0,
    }).assign(width=lambda f: f["width"].mask(i % 7 == 0))     # missing sizes stay Int64


def test_an_edit_writes_what_the_whole_edited_frame_would(tmp_path):
    parts = [_parent(ROWS // 2), _parent(ROWS // 2, offset=ROWS // 2)]   # two partitions, in order
    for k, part in enumerate(parts):
        part.to_parquet(tmp_path / f"{k}.parquet", index=False)
    whole = pd.concat(parts, ignore_index=True)
    keep = whole["used"].to_numpy()
    kept = int(keep.sum())
    rng = np.random.default_rng(0)
    detail = np.array([None] * kept, dtype=object)      # missing in the whole first batch
    detail[-10:] = "late text"
    columns = pd.DataFrame({
        "status": pd.Series(np.where(rng.random(kept) < 0.01, "corrupt", "ok"), dtype="str"),
        "detail": detail,
        "score": rng.random(kept),
    })
    edit = TableEdit(StoredTable.at(tmp_path / "0.parquet", tmp_path / "1.parquet"),
                     columns, keep=keep)
    assert len(edit) == kept
    out = tmp_path / "out.parquet"
    assert edit.write({out: None}) == {out: kept}

    expected = whole.loc[keep].reset_index(drop=True).assign(**{
        name: columns[name].to_numpy() if columns[name].dtype == object else columns[name].array
        for name in columns})
    expected.to_parquet(tmp_path / "expected.parquet", index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(tmp_path / "expected.parquet"))
    assert pq.read_schema(out).equals(pq.read_schema(tmp_path / "expected.parquet"),
                                      check_metadata=True)
    assert pq.ParquetFile(out).metadata.num_row_groups > 1      # written a batch at a time
    assert list(edit.dtypes().items()) == list(pd.read_parquet(out).dtypes.items())


def test_targets_with_masks_are_written_in_one_pass(tmp_path):
    _parent(1_000).to_parquet(tmp_path / "p.parquet", index=False)
    split = pd.Series(np.where(np.arange(1_000) % 4 == 0, "val", "train"), dtype="str")
    edit = TableEdit(StoredTable.at(tmp_path / "p.parquet"), pd.DataFrame({"split": split}))
    targets = {tmp_path / f"{name}.parquet": (split == name).to_numpy() for name in ("train", "val")}
    assert edit.write(targets) == {tmp_path / "train.parquet": 750, tmp_path / "val.parquet": 250}
    val = pd.read_parquet(tmp_path / "val.parquet")
    assert val["sample_id"].tolist() == [f"s{k}" for k in range(0, 1_000, 4)]
    assert (val["split"] == "val").all() and list(val.columns)[-1] == "split"


def test_an_empty_parent_gives_an_empty_table_with_every_column(tmp_path):
    _parent(0).to_parquet(tmp_path / "p.parquet", index=False)
    edit = TableEdit(StoredTable.at(tmp_path / "p.parquet"),
                     pd.DataFrame({"split": pd.Series([], dtype="str")}))
    edit.write({tmp_path / "out.parquet": None})
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 0 and list(out.columns) == ["sample_id", "status", "width", "used", "split"]


def test_a_failure_while_writing_leaves_the_previous_tables_whole(tmp_path, monkeypatch):
    """One target failing mid-way (its encoding runs in a thread of its own) publishes none of
    the targets: the splits table and its manifests stay the previous ones together."""
    _parent(300_000).to_parquet(tmp_path / "p.parquet", index=False)
    out, val = tmp_path / "out.parquet", tmp_path / "val.parquet"
    out.write_bytes(b"the previous table")
    val.write_bytes(b"the previous manifest")
    every_third = np.arange(300_000) % 3 == 0
    edit = TableEdit(StoredTable.at(tmp_path / "p.parquet"),
                     pd.DataFrame({"x": np.zeros(300_000)}), also={val: every_third})
    calls, lock = {"n": 0}, threading.Lock()
    real = pq.ParquetWriter.write_table

    def failing(self, table, *args, **kwargs):
        with lock:
            calls["n"] += 1
            if calls["n"] == 5:
                raise OSError("disk full")
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing)
    with pytest.raises(OSError, match="disk full"):
        edit.save(out)
    assert out.read_bytes() == b"the previous table"
    assert val.read_bytes() == b"the previous manifest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "p.parquet", "val.parquet"]
    monkeypatch.undo()
    assert edit.save(out) == {out: 300_000, val: 100_000}
    assert pd.read_parquet(val)["sample_id"].tolist() == [f"s{k}" for k in range(0, 300_000, 3)]


def test_an_edit_of_the_wrong_length_is_refused(tmp_path):
    _parent(10).to_parquet(tmp_path / "p.parquet", index=False)
    with pytest.raises(ValueError, match="9 rows for 10 kept rows"):
        TableEdit(StoredTable.at(tmp_path / "p.parquet"), pd.DataFrame({"x": np.zeros(9)}))


def test_reading_some_columns_keeps_the_order_asked_for(tmp_path):
    _parent(10).to_parquet(tmp_path / "p.parquet", index=False)
    table = StoredTable.at(tmp_path / "p.parquet")
    assert list(table.read(["used", "sample_id", "no_such"]).columns) == ["used", "sample_id"]
    assert len(table) == 10 and table.columns == ["sample_id", "status", "width", "used"]
    assert stored_table.BATCH_ROWS < ROWS


def test_files_begun_early_are_published_with_the_table_or_not_at_all(tmp_path, monkeypatch):
    """`start_also` encodes the manifests on a thread while the step goes on; they are the same
    files, published only by `save`, together with the table; a failure in the early write
    surfaces in `save` and leaves every previous file as it was."""
    _parent(300_000).to_parquet(tmp_path / "p.parquet", index=False)
    split = pd.Series(np.where(np.arange(300_000) % 3 == 0, "val", "train"), dtype="str")
    out, val = tmp_path / "out.parquet", tmp_path / "val.parquet"

    def edit() -> TableEdit:
        return TableEdit(StoredTable.at(tmp_path / "p.parquet"), pd.DataFrame({"split": split}),
                         also={val: (split == "val").to_numpy()})

    edit().save(out)
    expected = pd.read_parquet(val), pd.read_parquet(out)
    out.write_bytes(b"the previous table")
    val.write_bytes(b"the previous manifest")
    early = edit()
    early.start_also()
    assert early._early is not None
    early._early.result()                                   # written, not yet published
    assert val.read_bytes() == b"the previous manifest"
    assert early.save(out) == {out: 300_000, val: 100_000}
    pd.testing.assert_frame_equal(pd.read_parquet(val), expected[0])
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "p.parquet", "val.parquet"]

    out.write_bytes(b"the previous table")
    val.write_bytes(b"the previous manifest")
    real = pq.ParquetWriter.write_batch

    def failing(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", failing)
    broken = edit()
    broken.start_also()
    with pytest.raises(OSError, match="disk full"):
        broken.save(out)
    monkeypatch.setattr(pq.ParquetWriter, "write_batch", real)
    assert out.read_bytes() == b"the previous table"
    assert val.read_bytes() == b"the previous manifest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "p.parquet", "val.parquet"]


def test_a_failed_table_write_discards_the_files_begun_early(tmp_path, monkeypatch):
    """The table is spliced while the manifests begun early still encode on their thread; when
    the splice fails, the manifests are waited for and removed: nothing is published and no
    temporary is left."""
    _parent(200_000).to_parquet(tmp_path / "p.parquet", index=False)
    split = pd.Series(np.where(np.arange(200_000) % 4 == 0, "val", "train"), dtype="str")
    out, val = tmp_path / "out.parquet", tmp_path / "val.parquet"
    out.write_bytes(b"the previous table")
    val.write_bytes(b"the previous manifest")

    def failing_splice(*args, **kwargs):
        raise OSError("disk full while splicing")

    monkeypatch.setattr(stored_table, "splice", failing_splice)
    edit = TableEdit(StoredTable.at(tmp_path / "p.parquet"), pd.DataFrame({"split": split}),
                     also={val: (split == "val").to_numpy()})
    edit.start_also()
    with pytest.raises(OSError, match="disk full while splicing"):
        edit.save(out)
    assert edit._early is None                         # waited for, not left running
    assert out.read_bytes() == b"the previous table"
    assert val.read_bytes() == b"the previous manifest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "p.parquet", "val.parquet"]


def test_an_edit_holds_its_columns_without_copying_them(tmp_path):
    """The edit's columns go to Arrow once, without a copy: a column of one chunk is taken as it
    is (combine_chunks copied even one chunk, 72 MB for a million sha256 texts, which was the
    verification step's peak memory at 1M rows)."""
    n = 50_000
    columns = pd.DataFrame({"sha256": pd.Series([f"{i:064x}" for i in range(n)], dtype="str"),
                            "width": np.arange(n, dtype=np.int64)})
    _parent(n).to_parquet(tmp_path / "p.parquet", index=False)
    edited = stored_table._Edited(TableEdit(StoredTable.at(tmp_path / "p.parquet"), columns))
    base = pa.Table.from_pandas(columns, preserve_index=False)      # zero-copy itself
    for name in ("sha256", "width"):
        held, source = edited.added[name], base.column(name).chunk(0)
        assert held.equals(source)
        assert [b.address for b in held.buffers() if b is not None] == \
            [b.address for b in source.buffers() if b is not None]
