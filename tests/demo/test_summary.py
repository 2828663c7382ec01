"""The closing summary of `make demo` counts what a user would (resized images, not the resize
manifest's files; samples per split, not the per-class counts table), names packed formats and
models in words, and points to the pictures, TensorBoard, the UI and the full log."""

from __future__ import annotations

import json

import pandas as pd

from demo.summary import summarize
from ml.formats.handles import CheckpointHandle, TFRecordShardsHandle


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
    (out / "splits" / "thumbnails.png").write_bytes(b"png")
    (out / "quality").mkdir()
    for name in ("blurry.png", "duplicates.png"):
        (out / "quality" / name).write_bytes(b"png")
    text = summarize(tmp_path)
    assert "samples:  3 (2 labels)" in text
    assert "resized:  2 images" in text
    assert "splits:   train 2  (" in text
    assert f"thumbnails of each split: {out / 'splits' / 'thumbnails.png'}" in text
    assert f"blurry.png, duplicates.png in {out / 'quality'}" in text


def test_packed_formats_and_models_are_named_in_words(tmp_path):
    out = tmp_path / "faces"
    out.mkdir()
    pd.DataFrame({"label": ["a"]}).to_parquet(out / "catalog.parquet")
    packed = TFRecordShardsHandle(out_dir=str(out / "tfrecords"), shards={"train": ("a",)},
                                  records={"train": 7}, num_classes=1)
    (out / "tfrecords.handle.json").write_text(packed.to_json())
    model_dir = out / "train" / "face"
    model_dir.mkdir(parents=True)
    (model_dir / "MODEL_CARD.md").write_text("# card")
    (model_dir / "verification.png").write_bytes(b"png")
    model = CheckpointHandle(task="face", checkpoint=str(model_dir / "e.pt"), out_dir=str(model_dir),
                             summary={"val_accuracy": 0.93, "raw_pixel_accuracy": 0.59})
    (out / "model.handle.json").write_text(model.to_json())
    (tmp_path / "demo.log").write_text(json.dumps({}))
    text = summarize(tmp_path)
    assert "Handle" not in text
    assert "packed:   TFRecord shards, 7 records, 1 classes" in text
    assert ("model:    face: val_accuracy 0.930 against raw_pixel_accuracy 0.590 "
            "(quality gate passed)") in text
    assert f"card: {model_dir / 'MODEL_CARD.md'}" in text and "verification.png" in text
    assert "make tensorboard" in text and "make ui" in text
    assert f"Full log of the demo's runs: {tmp_path / 'demo.log'}" in text
