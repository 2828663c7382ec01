"""The resize manifest checkpoints by difference: a save writes the entries that changed, not
the whole manifest (the JSON file it replaces was rewritten whole every minute: N squared)."""

from __future__ import annotations

import json

from PIL import Image

from ml.resize import ResizeItem, ResizeSpec, stage_resize
from ml.resize_manifest import LEGACY_MANIFEST_NAME, MANIFEST_NAME, ResizeManifest


def test_a_save_writes_only_what_changed_at_200k_entries(tmp_path):
    manifest = ResizeManifest(tmp_path)
    for i in range(200_000):
        manifest.set(f"s{i}", {"output": f"{i}.jpg", "bytes": i})
    assert manifest.save() == 200_000
    again = ResizeManifest(tmp_path)
    assert len(again.entries) == 200_000 and again.get("s7") == {"output": "7.jpg", "bytes": 7}
    again.set("s7", {"output": "7.jpg", "bytes": 70})
    again.delete("s8")
    assert again.save() == 2
    assert again.save() == 0
    third = ResizeManifest(tmp_path)
    assert third.get("s7")["bytes"] == 70 and "s8" not in third and len(third.entries) == 199_999


def test_a_json_manifest_from_before_is_carried_over_without_redoing_images(tmp_path):
    src = tmp_path / "src" / "a.jpg"
    src.parent.mkdir()
    Image.new("RGB", (40, 30), (200, 20, 20)).save(src)
    out, items, spec = tmp_path / "out", [ResizeItem("a", str(src), "a")], ResizeSpec(16, 16)
    stage_resize(items, out, spec, workers=1)
    entries = ResizeManifest(out).entries
    (out / MANIFEST_NAME).unlink()                         # as an older version left it
    (out / LEGACY_MANIFEST_NAME).write_text(json.dumps({"version": 1, "entries": entries}))
    result = stage_resize(items, out, spec, workers=1)
    assert (result.processed, result.unchanged) == (0, 1)
    assert not (out / LEGACY_MANIFEST_NAME).exists() and (out / MANIFEST_NAME).exists()
