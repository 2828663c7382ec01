"""TFRecord packing of a split manifest: what each record holds and the order records are in."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ml.formats.example_proto import make_image_example
from ml.formats.tfrecord import iter_records, shuffled_order
from ml.packing import ImageExampleRows, pack_tfrecords


def _frame(tmp_path: Path, n: int = 61) -> pd.DataFrame:
    """Rows whose every column differs from row to row, so a record taken from the wrong row
    (one column read at another position) shows in its bytes."""
    rows = []
    for i in range(n):
        path = tmp_path / "img" / f"{i:03d}.{'png' if i % 5 == 0 else 'jpg'}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(f"image bytes {i}".encode() * (1 + i % 3))
        rows.append({"file": str(path), "label_index": i % 7, "label": f"class {i % 7}",
                     "height": 10 + i, "width": 20 + i, "source_key": f"key/{i}",
                     "split": ("train", "val", "test")[i % 3]})
    return pd.DataFrame(rows)


def _expected(row) -> bytes:
    return make_image_example(Path(row.file).read_bytes(), label=row.label_index,
                              height=row.height, width=row.width, text=row.label,
                              format="png" if row.file.endswith(".png") else "jpeg",
                              filename=row.source_key)


def test_each_split_is_packed_in_its_seeded_shuffle_with_every_column_from_the_same_row(
        tmp_path):
    frame = _frame(tmp_path)
    handle = pack_tfrecords(frame, tmp_path / "tfrecords", target_shard_bytes=400, seed=5)
    for split, rows in frame.groupby("split", sort=True):
        order = shuffled_order(len(rows), 5)
        assert order != sorted(order)                  # the shuffle is not the table's order
        expected = [_expected(row) for row in rows.iloc[order].itertuples()]
        written = [bytes(r) for path in handle.shards[split] for r in iter_records(path)]
        assert len(handle.shards[split]) > 1 and written == expected


def test_example_rows_in_an_order_are_the_rows_at_those_positions(tmp_path):
    frame = _frame(tmp_path, 23)
    order = shuffled_order(len(frame), 11)
    in_table_order = ImageExampleRows(frame)
    in_order = ImageExampleRows(frame, order)
    assert len(in_order) == len(frame)
    for i, position in enumerate(order):
        assert b"".join(in_order.record(i)) == b"".join(in_table_order.record(position))
        assert b"".join(in_order.record(i)) == _expected(frame.iloc[position])
