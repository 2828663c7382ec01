"""The quality report on planted issues: each is counted, listed with its score and shown."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter

from tests.assets.helpers import definitions_for, materialization_metadata, materialize_all
from tests.assets.test_leakage import textured


def gradient(size: tuple[int, int]) -> Image.Image:
    """A colour ramp with a few shapes: a wide histogram, as a photo has, whose detail a blur
    removes (cleanvision's blurry score forgives images with a narrow histogram)."""
    w, h = size
    ramp = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 1))
    pixels = np.concatenate([ramp, ramp[:, ::-1], np.full((h, w, 1), 128.0)], axis=2)
    pixels[h // 4: h // 2, w // 4: w // 2] = (250, 30, 30)
    pixels[h // 2: 3 * h // 4, w // 2: 3 * w // 4] = (20, 20, 230)
    return Image.fromarray(pixels.astype(np.uint8))


def planted_dataset(tmp_path: Path) -> dict:
    root = tmp_path / "src" / "things"
    for i in range(12):
        textured(root / "plain" / f"{i:02d}.jpg", seed=i)
    base = Image.open(root / "plain" / "00.jpg").convert("RGB")
    planted = {
        "dark": ImageEnhance.Brightness(base).enhance(0.15),
        "light": Image.blend(base, Image.new("RGB", base.size, "white"), 0.96),
        "blurry": gradient(base.size).filter(ImageFilter.GaussianBlur(4)),
        "grayscale": Image.open(root / "plain" / "02.jpg").convert("L").convert("RGB"),
        "low_information": Image.new("RGB", base.size, (90, 90, 90)),
        "odd_aspect_ratio": Image.open(root / "plain" / "03.jpg").convert("RGB").resize((300, 40)),
    }
    for issue, image in planted.items():
        (root / "odd").mkdir(parents=True, exist_ok=True)
        image.save(root / "odd" / f"{issue}.jpg", "JPEG", quality=92)
    shutil.copyfile(root / "plain" / "04.jpg", root / "odd" / "copy_of_04.jpg")
    Image.new("RGB", (5, 40), (10, 200, 30)).save(root / "odd" / "sliver.png")
    return {"name": "things", "kind": "image_folder", "source": {"root": str(root)},
            "resize": {"mode": "letterbox", "width": 64, "height": 64, "workers": 1}}


def test_planted_issues_are_counted_listed_and_shown(tmp_path):
    result = materialize_all(definitions_for(tmp_path, [planted_dataset(tmp_path)]),
                             selection=[dg.AssetKey(["things", a]) for a in
                                        ("catalog", "verification_report", "quality_report")])
    meta = materialization_metadata(result, ["things", "quality_report"])
    assert meta["images_measured"] == 20
    flagged = pd.read_parquet(meta["flagged_table"])
    issues = dict(zip(flagged["source_key"], flagged["issues"]))
    for issue in ("dark", "light", "blurry", "grayscale", "low_information", "odd_aspect_ratio"):
        assert issue in issues.get(f"odd/{issue}.jpg", ""), (issue, issues)
        assert meta[issue] >= 1
    assert not any(key.startswith("plain/") for key in issues), issues   # no false alarms
    assert meta["exact_duplicate_pairs"] == 1 and meta["too_small_for_hash"] == 1
    pairs = pd.read_parquet(meta["duplicate_pairs_table"])
    assert {"plain/04.jpg", "odd/copy_of_04.jpg"} <= set(pairs["source_key_a"]) | set(
        pairs["source_key_b"])
    for issue in ("dark", "blurry", "duplicates"):
        with Image.open(meta[f"{issue}_gallery"]) as gallery:
            assert gallery.width >= 300
    assert "](data:image/" in meta["galleries"]
    per_class = pd.read_parquet(meta["per_class_table"])
    assert per_class.set_index("label").loc["odd", "dark"] == 1


def test_splits_count_each_pixel_issue_per_split(tmp_path):
    """Which split holds the dark or blurry images: the splits asset counts the issues of its
    images per split (the size issues stay the source files', in the quality report)."""
    spec = planted_dataset(tmp_path)
    spec["splits"] = {"leakage": "warn"}     # the planted copy may cross splits here
    result = materialize_all(definitions_for(tmp_path, [spec]),
                             selection=[dg.AssetKey(["things", a]) for a in
                                        ("catalog", "verification_report", "quality_report",
                                         "resized", "splits")])
    meta = materialization_metadata(result, ["things", "splits"])
    overall = materialization_metadata(result, ["things", "quality_report"])
    per_split = meta["issues_per_split"]
    split_of = {key: name for name in ("train", "val", "test")
                for key in pd.read_parquet(meta[f"{name}_manifest"])["source_key"]}
    assert {name: row["images"] for name, row in per_split.items()} == {
        name: meta[f"{name}_count"] for name in ("train", "val", "test")
        if meta[f"{name}_count"]}
    for issue in ("dark", "light", "blurry", "grayscale", "low_information"):
        assert per_split[split_of[f"odd/{issue}.jpg"]][issue] >= 1, (issue, per_split)
        assert sum(row[issue] for row in per_split.values()) == overall[issue], issue
    assert all("odd_size" not in row for row in per_split.values())
    assert all(row["measured"] == row["images"] for row in per_split.values())
