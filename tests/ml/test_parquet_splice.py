"""An edit that keeps every row of its parent is written by copying the parent's column chunks
and encoding only its own columns: what readers get back is exactly the table written whole,
the parent's chunks are the parent's bytes, what cannot be spliced safely is re-encoded, and a
failure leaves the previous table."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from ml import parquet_splice, thrift_compact as tc
from ml.stored_table import StoredTable, TableEdit

ROWS = 300_000          # three row groups of 131,072, and chunked columns when read back


def _parent(n: int) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame({
        "sample_id": pd.Series([f"s{k:07d}" for k in i], dtype="str"),
        "status": pd.Series(np.where(i % 97 == 0, "missing", "ok"), dtype="str"),
        "label": pd.Series([f"class_{k % 40}" for k in i], dtype="str"),
        "width": pd.array(i % 300, dtype="Int64"),
        "used": i % 5 != 0,
    }).assign(width=lambda f: f["width"].mask(i % 7 == 0))


def _edit_columns(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    detail = np.array([None] * n, dtype=object)
    detail[-10:] = "late text"
    return pd.DataFrame({
        "status": pd.Series(np.where(rng.random(n) < 0.01, "corrupt", "ok"), dtype="str"),
        "detail": detail,
        "size": pd.array(rng.integers(0, 1 << 40, n), dtype="Int64"),
        "score": rng.random(n),
    })


def _footer_bytes(path) -> bytes:
    data = open(path, "rb").read()
    length = struct.unpack("<i", data[-8:-4])[0]
    return data[-8 - length:-8]


def _chunk_bytes(path, column: str) -> list[bytes]:
    """The stored bytes of every chunk of `column`, row group by row group."""
    meta, data, out = pq.ParquetFile(path).metadata, open(path, "rb").read(), []
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        chunk = next(rg.column(c) for c in range(rg.num_columns)
                     if rg.column(c).path_in_schema == column)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        out.append(data[start:start + chunk.total_compressed_size])
    return out


def test_footers_round_trip_byte_for_byte(tmp_path):
    """Every field kept, those the code never names included (size statistics, column orders,
    and one from a later format version)."""
    _parent(ROWS).to_parquet(tmp_path / "p.parquet", index=False)
    pq.write_table(pa.table({"x": [1.5, None, 3.0]}), tmp_path / "s.parquet",
                   write_statistics=True, write_page_index=True)
    for name in ("p.parquet", "s.parquet"):
        footer = _footer_bytes(tmp_path / name)
        assert tc.dumps(tc.loads(footer)) == footer
    future = tc.Struct({1: (tc.I32, -7), 3: (tc.TRUE, True), 4: (tc.FALSE, False),
                        40: (tc.DOUBLE, 2.5), 200: (tc.BINARY, b"\x00later"),
                        5: (tc.LIST, tc.List(tc.I64, list(range(-20, 20)))),
                        6: (tc.MAP, (tc.BINARY, tc.I32, [(b"k", 1)])),
                        7: (tc.STRUCT, tc.Struct({1: (tc.I16, 300)}))})
    assert tc.loads(tc.dumps(future)) == future
    with pytest.raises(tc.ThriftError):
        tc.loads(tc.dumps(future)[:-3])


def test_a_keep_all_edit_is_spliced_and_reads_back_as_the_whole_table(tmp_path):
    parent = _parent(ROWS)
    parent.to_parquet(tmp_path / "p.parquet", index=False, row_group_size=131_072)
    columns = _edit_columns(ROWS)
    out = tmp_path / "out.parquet"
    assert TableEdit(StoredTable.at(tmp_path / "p.parquet"), columns).save(out) == {out: ROWS}

    expected = parent.assign(**{n: columns[n].to_numpy() if columns[n].dtype == object
                                else columns[n].array for n in columns})
    expected.to_parquet(tmp_path / "expected.parquet", index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(tmp_path / "expected.parquet"))
    assert pq.read_schema(out).equals(pq.read_schema(tmp_path / "expected.parquet"),
                                      check_metadata=True)
    assert list(pd.read_parquet(out).columns) == ["sample_id", "status", "label", "width", "used",
                                                  "detail", "size", "score"]
    # the parent's columns are its bytes, copied; the replaced one is not
    for column in ("sample_id", "label", "width", "used"):
        assert _chunk_bytes(out, column) == _chunk_bytes(tmp_path / "p.parquet", column)
    assert _chunk_bytes(out, "status") != _chunk_bytes(tmp_path / "p.parquet", "status")
    # other ways in: row group by row group, batches, a dataset scan, a column alone
    f = pq.ParquetFile(out)
    assert f.metadata.num_row_groups == 3 and f.metadata.num_rows == ROWS
    assert sum(f.read_row_group(g).num_rows for g in range(3)) == ROWS
    assert sum(b.num_rows for b in f.iter_batches(batch_size=50_000, columns=["score"])) == ROWS
    scanned = ds.dataset(out).to_table(filter=ds.field("status") == "corrupt")
    assert scanned.num_rows == int((columns["status"] == "corrupt").sum())
    assert pd.read_parquet(out, columns=["width"])["width"].equals(parent["width"])


def test_an_edit_of_an_edit_is_spliced_again(tmp_path):
    """Stages chain: the verified table is the resized table's parent."""
    _parent(1_000).to_parquet(tmp_path / "p.parquet", index=False)
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    TableEdit(StoredTable.at(tmp_path / "p.parquet"), _edit_columns(1_000)).save(first)
    TableEdit(StoredTable.at(first), pd.DataFrame({"file": ["f"] * 1_000})).save(second)
    table = pd.read_parquet(second)
    assert list(table.columns)[-2:] == ["score", "file"] and len(table) == 1_000
    assert _chunk_bytes(second, "detail") == _chunk_bytes(first, "detail")


@pytest.mark.parametrize("parent", ["page_index", "nested", "empty"])
def test_what_cannot_be_spliced_is_re_encoded(tmp_path, parent, monkeypatch):
    n = 0 if parent == "empty" else 5_000
    frame = _parent(n)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if parent == "nested":
        table = table.append_column("tags", pa.array([["a", "b"]] * n, pa.list_(pa.string())))
    pq.write_table(table, tmp_path / "p.parquet", write_page_index=parent == "page_index")
    spliced = []
    real = parquet_splice.splice
    monkeypatch.setattr("ml.stored_table.splice",
                        lambda *a, **k: spliced.append(real(*a, **k)))
    out = tmp_path / "out.parquet"
    TableEdit(StoredTable.at(tmp_path / "p.parquet"),
              pd.DataFrame({"x": np.arange(n, dtype=np.int64)})).save(out)
    assert spliced == []                                 # refused, then streamed
    back = pd.read_parquet(out)
    assert len(back) == n and back["x"].tolist() == list(range(n))
    assert list(back.columns)[-1] == "x"


def test_a_failure_while_splicing_leaves_the_previous_table(tmp_path, monkeypatch):
    _parent(ROWS).to_parquet(tmp_path / "p.parquet", index=False)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"the previous table")

    def failing(*args):
        raise OSError("disk full")

    monkeypatch.setattr(parquet_splice, "_copy", failing)
    with pytest.raises(OSError, match="disk full"):
        TableEdit(StoredTable.at(tmp_path / "p.parquet"), _edit_columns(ROWS)).save(out)
    assert out.read_bytes() == b"the previous table"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "p.parquet"]
