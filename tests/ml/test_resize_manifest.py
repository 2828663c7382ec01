"""The resize manifest checkpoints by difference: a save writes the rows that changed, not
the whole manifest (the JSON file it replaces was rewritten whole every minute: N squared),
and it reads back as columns in one query."""

from __future__ import annotations

import json
import sqlite3

from PIL import Image

from ml.resize import ResizeItem, ResizeSpec, stage_resize
from ml.resize_manifest import COLUMNS, LEGACY_MANIFEST_NAME, MANIFEST_NAME, ResizeManifest


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
    third = ResizeManifest(tmp_path).frame.set_index("id")
    assert third.loc["s7", "bytes"] == 70 and "s8" not in third.index and len(third) == 199_999


def test_a_json_manifest_from_before_is_carried_over_without_redoing_images(tmp_path):
    out, items, spec, entries = _resized_once(tmp_path)
    (out / MANIFEST_NAME).unlink()                         # as an older version left it
    (out / LEGACY_MANIFEST_NAME).write_text(json.dumps({"version": 1, "entries": entries}))
    result = stage_resize(items, out, spec, workers=1)
    assert (result.processed, result.unchanged) == (0, 1)
    assert not (out / LEGACY_MANIFEST_NAME).exists() and (out / MANIFEST_NAME).exists()


def test_a_table_of_json_entries_from_before_is_carried_over(tmp_path):
    out, items, spec, entries = _resized_once(tmp_path)
    (out / MANIFEST_NAME).unlink()
    db = sqlite3.connect(out / MANIFEST_NAME)              # the previous version's layout
    with db:
        db.execute("CREATE TABLE entries (id TEXT PRIMARY KEY, entry TEXT NOT NULL)")
        db.executemany("INSERT INTO entries VALUES (?, ?)",
                       [(k, json.dumps(v)) for k, v in entries.items()])
    db.close()
    result = stage_resize(items, out, spec, workers=1)
    assert (result.processed, result.unchanged) == (0, 1)
    db = sqlite3.connect(out / MANIFEST_NAME)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert tables == {"outputs"}


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
