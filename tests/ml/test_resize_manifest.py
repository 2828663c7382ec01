"""The resize manifest checkpoints by difference: a save writes the rows that changed, not
the whole manifest (the JSON file of the first version was rewritten whole every minute: N
squared), and it reads back as columns; the manifests of earlier versions are carried over."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq

from PIL import Image

from ml.append_table import _last_per_key
from ml.resize import ResizeItem, ResizeSpec, stage_resize
from ml.resize_manifest import (COLUMNS, LEGACY_MANIFEST_NAME, MANIFEST_NAME, SQLITE_MANIFEST_NAME,
                                ResizeManifest)


def row(i: int, nbytes: int | None = None) -> tuple:
    return (f"s{i}", f"/src/{i}.jpg", "", 100 + i, 10**18 + i, "f" * 16, f"{i}.jpg",
            i if nbytes is None else nbytes, "resized", "", "")


def test_a_save_writes_only_what_changed_at_200k_rows(tmp_path):
    manifest = ResizeManifest(tmp_path)
    manifest.put(row(i) for i in range(200_000))
    assert manifest.save() == 200_000
    again = ResizeManifest(tmp_path)
    assert len(again.frame) == 200_000 and list(again.frame.columns) == list(COLUMNS)
    seven = again.frame.set_index("id").loc["s7"]
    assert (seven["output"], seven["bytes"], seven["src_mtime_ns"]) == ("7.jpg", 7, 10**18 + 7)
    again.put([row(7, nbytes=70)])
    again.delete(["s8"])
    assert again.save() == 2
    assert again.save() == 0
    parts = sorted((tmp_path / MANIFEST_NAME).iterdir())
    assert [pq.ParquetFile(p).metadata.num_rows for p in parts] == [200_000, 2]   # the change only
    third = ResizeManifest(tmp_path)
    frame = third.frame.set_index("id")
    assert frame.loc["s7", "bytes"] == 70 and "s8" not in frame.index and len(frame) == 199_999
    third.finish()                                  # folds the parts into one file
    parts = sorted((tmp_path / MANIFEST_NAME).iterdir())
    assert [pq.ParquetFile(p).metadata.num_rows for p in parts] == [199_999]
    assert ResizeManifest(tmp_path).frame.equals(third.frame)


def test_a_json_manifest_from_before_is_carried_over_without_redoing_images(tmp_path):
    out, items, spec, entries = _resized_once(tmp_path)
    shutil.rmtree(out / MANIFEST_NAME)                     # as the first version left it
    (out / LEGACY_MANIFEST_NAME).write_text(json.dumps({"version": 1, "entries": entries}))
    result = stage_resize(items, out, spec, workers=1)
    assert (result.processed, result.unchanged) == (0, 1)
    assert not (out / LEGACY_MANIFEST_NAME).exists() and (out / MANIFEST_NAME).exists()


def test_a_table_of_json_entries_from_before_is_carried_over(tmp_path):
    out, items, spec, entries = _resized_once(tmp_path)
    shutil.rmtree(out / MANIFEST_NAME)
    db = sqlite3.connect(out / SQLITE_MANIFEST_NAME)       # the second version's first layout
    with db:
        db.execute("CREATE TABLE entries (id TEXT PRIMARY KEY, entry TEXT NOT NULL)")
        db.executemany("INSERT INTO entries VALUES (?, ?)",
                       [(k, json.dumps(v)) for k, v in entries.items()])
    db.close()
    result = stage_resize(items, out, spec, workers=1)
    assert (result.processed, result.unchanged) == (0, 1)
    assert not (out / SQLITE_MANIFEST_NAME).exists() and (out / MANIFEST_NAME).exists()


def test_a_sqlite_table_of_columns_from_before_is_carried_over(tmp_path):
    out, items, spec, entries = _resized_once(tmp_path)
    rows = list(ResizeManifest(out).frame.itertuples(index=False, name=None))
    shutil.rmtree(out / MANIFEST_NAME)
    db = sqlite3.connect(out / SQLITE_MANIFEST_NAME)       # the second version's layout
    with db:
        db.execute(f"CREATE TABLE outputs ({', '.join(COLUMNS)})")
        db.executemany(f"INSERT INTO outputs VALUES ({','.join('?' * len(COLUMNS))})", rows)
    db.close()
    result = stage_resize(items, out, spec, workers=1)
    assert (result.processed, result.unchanged) == (0, 1)
    assert not (out / SQLITE_MANIFEST_NAME).exists()
    assert list(ResizeManifest(out).frame.itertuples(index=False, name=None)) == rows


def test_a_crash_between_compaction_and_clean_up_reads_the_new_base(tmp_path):
    manifest = ResizeManifest(tmp_path)
    manifest.put(row(i) for i in range(10))
    manifest.save()
    manifest.delete(["s3"])
    manifest.save()
    folder = tmp_path / MANIFEST_NAME
    old = {p.name: p.read_bytes() for p in folder.iterdir()}
    manifest.finish()
    for name, data in old.items():                 # as if the clean-up had not happened
        (folder / name).write_bytes(data)
    again = ResizeManifest(tmp_path).frame
    assert sorted(again["id"]) == sorted(f"s{i}" for i in range(10) if i != 3)


def _entries(manifest: ResizeManifest) -> dict[str, dict]:
    """The manifest's rows as the older JSON entries."""
    return {r.id: {"source": [r.src_path, r.member, r.src_size, r.src_mtime_ns], "spec": r.spec,
                   "output": r.output, "bytes": r.bytes, "status": r.status, "reason": r.reason,
                   "detail": r.detail} for r in manifest.frame.itertuples(index=False)}


def _resized_once(tmp_path):
    """One image resized once: the output folder, items, spec and the manifest as JSON entries."""
    src = tmp_path / "src" / "a.jpg"
    src.parent.mkdir()
    Image.new("RGB", (40, 30), (200, 20, 20)).save(src)
    out, items, spec = tmp_path / "out", [ResizeItem("a", str(src), "a")], ResizeSpec(16, 16)
    stage_resize(items, out, spec, workers=1)
    return out, items, spec, _entries(ResizeManifest(out))


def test_a_first_runs_checkpoints_fold_without_a_copy_and_keep_their_order(tmp_path):
    """A first run writes each sample once, a part per checkpoint: folding them needs no
    last-row-per-key pass (at 1M rows its copy of the table was the run's peak memory)."""
    manifest = ResizeManifest(tmp_path)
    for start in range(0, 30_000, 10_000):                 # three checkpoints, disjoint rows
        manifest.put(row(i) for i in range(start, start + 10_000))
        manifest.save()
    table = manifest.store.read()
    assert table["id"].to_pylist() == [f"s{i}" for i in range(30_000)]
    concatenated = pa.concat_tables([table, table.slice(0, 0)])
    assert _last_per_key(concatenated, "id") is concatenated
    again = pa.concat_tables([table, table.slice(5, 1)])    # s5 written twice: the last counts
    last = _last_per_key(again, "id")
    assert len(last) == 30_000 and last["id"][-1].as_py() == "s5"
