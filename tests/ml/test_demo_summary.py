"""The closing summary of `make demo` counts what a user would: resized images (not the resize
manifest's files) and samples per split (not the per-class counts table)."""

from __future__ import annotations

import pandas as pd

from ml.demo_summary import summarize


def test_the_summary_counts_images_and_split_samples_only(tmp_path):
    out = tmp_path / "faces"
    (out / "resized" / "id_1").mkdir(parents=True)
    (out / "resized" / ".resize_manifest").mkdir()
    pd.DataFrame({"label": ["a", "b", "b"]}).to_parquet(out / "catalog.parquet")
    for name in ("0.jpg", "1.jpg"):
        (out / "resized" / "id_1" / name).write_bytes(b"jpeg")
    (out / "resized" / ".resize_manifest" / "base-00000001.parquet").write_bytes(b"manifest")
    (out / "splits").mkdir()
    pd.DataFrame({"file": ["x", "y"]}).to_parquet(out / "splits" / "train.parquet")
    pd.DataFrame({"samples": range(5)}).to_parquet(out / "splits" / "class_counts.parquet")
    text = summarize(tmp_path)
    assert "catalog:  3 samples, 2 labels" in text
    assert "resized:  2 images" in text
    assert "splits:   {'train': 2}" in text
