"""Classification over the TFRecord stream: beats the majority class on held-out images of an
imbalanced sample set, and its class-balanced draw evens out the classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from demo.sample_data import generate_inat
from ml.datasets import TFRecordStream
from ml.datasets.balanced_stream import ClassBalancedStream, balanced_rates, count_labels
from ml.errors import ConfigError, ImageError
from ml.imageio import load_rgb
from ml.packing import pack_tfrecords
from ml.resize import ResizeItem, ResizeSpec, resize_image
from ml.train.classify import Config, train
from ml.train.config import load_section
from ml.train.gate import GATES
from ml.train.ddp import DistEnv
from ml.train.report import Reporter

TRAIN_COUNTS = (28, 14, 7, 4)          # per class in the generator's train split: imbalanced
SIZE = 48


def letterboxed_frame(root: Path, train_counts=TRAIN_COUNTS) -> pd.DataFrame:
    """The generated iNat-style images (readable ones) letterboxed to SIZE, as a split table:
    per class, every fourth image is a test image, the rest train."""
    paths = generate_inat(root / "inat", train_counts=train_counts)
    spec = ResizeSpec(width=SIZE, height=SIZE, mode="letterbox")
    rows = []
    for split_file in ("train", "val"):
        doc = json.loads(paths[split_file].read_text())
        names = {c["id"]: c["name"] for c in doc["categories"]}
        labels = {a["image_id"]: a["category_id"] for a in doc["annotations"]}
        for image in doc["images"]:
            source = root / "inat" / image["file_name"]
            try:
                load_rgb(source)
            except ImageError:
                continue                    # the generator plants a missing and a broken file
            out = root / "resized" / f"{image['id']}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            resize_image(ResizeItem(str(image["id"]), str(source), out.stem), spec).save(
                out, quality=95)
            label = labels[image["id"]]
            rows.append({"file": str(out), "label_index": label, "label": names[label],
                         "height": SIZE, "width": SIZE, "source_key": image["file_name"]})
    frame = pd.DataFrame(rows)
    order = frame.groupby("label_index").cumcount()
    frame["split"] = np.where(order % 4 == 3, "test", "train")
    return frame


@pytest.fixture(scope="module")
def tfrecords(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("classify")
    handle = pack_tfrecords(letterboxed_frame(root), root / "tfrecords",
                            target_shard_bytes=64 * 1024)
    path = root / "tfrecords.handle.json"
    path.write_text(handle.to_json())
    return path


def run(handle: Path, out: Path, **options) -> dict:
    torch.set_num_threads(2)
    values = {"image_size": SIZE, "widths": [16, 32, 64, 128], "epochs": 12, "batch_size": 16,
              "lr": 3e-3, "eval_splits": ["test"], "device": "cpu", **options}
    return train(Config.parse(values, "test"), {"tfrecords": str(handle)}, out,
                 Reporter(sinks=[]), DistEnv.from_environment("cpu"))


@pytest.mark.parametrize("model", [
    {"model": "small_cnn"},
    {"model": "vit", "patch_size": 8, "vit_dim": 64, "vit_depth": 2, "vit_heads": 2},
], ids=["small_cnn", "vit"])
def test_classifier_beats_the_majority_class(tfrecords, tmp_path, model):
    summary = run(tfrecords, tmp_path, **model)
    assert summary["accuracy"] > summary["majority_class_accuracy"] + 0.1, summary
    assert summary["mean_class_accuracy"] > summary["majority_mean_class_accuracy"] + 0.25, summary
    assert len(summary["per_class_accuracy"]) == len(TRAIN_COUNTS)
    weights = list(summary["class_weights"].values())
    assert max(weights) > 1 > min(weights), "rare classes repeated, common ones thinned"
    shares = list(summary["drawn_class_share"].values())
    assert max(shares) < 2.5 * min(shares), f"balanced draw: {shares}"
    assert Path(summary["checkpoint"]).name == "epoch_0012.pt"
    assert Path(summary["curves_png"]).is_file()
    with Image.open(summary["confusion_png"]) as confusion:       # one row and column per class
        assert confusion.width > 300 and confusion.height > 300
    json.dumps(summary)


def test_balanced_stream_evens_out_classes_and_records_weights(tfrecords):
    handle_doc = json.loads(tfrecords.read_text())
    shards = handle_doc["shards"]["train"]
    counts, names = count_labels(shards, handle_doc["num_classes"])
    assert counts.tolist() == sorted(counts.tolist(), reverse=True) and counts[0] > 4 * counts[-1]
    assert len(names) == len(TRAIN_COUNTS)
    stream = ClassBalancedStream(TFRecordStream(shards, transform=None), counts, power=1.0,
                                 shuffle_buffer=64, seed=3)
    drawn = []
    for epoch in range(6):
        stream.set_epoch(epoch)
        drawn += [label for _, label in stream]
    share = np.bincount(drawn, minlength=len(counts)) / len(drawn)
    assert np.all(np.abs(share - 0.25) < 0.08), share
    assert abs(len(drawn) / 6 - counts.sum()) < 0.2 * counts.sum(), "epoch length kept"
    plain = balanced_rates(counts, power=0.0)
    assert np.allclose(plain, 1.0), "power 0 is the plain stream"
    assert stream.class_weights[len(counts) - 1] == pytest.approx(counts.sum() / (4 * counts[-1]))


def test_eval_split_missing_from_the_records_is_a_config_error(tfrecords, tmp_path):
    with pytest.raises(ConfigError, match="val"):
        run(tfrecords, tmp_path, eval_splits=["val"], epochs=1)


@pytest.mark.parametrize("path", ["config/train.yaml", "config/gpu.yaml"])
def test_config_sections_are_valid(path):
    repo = Path(__file__).resolve().parents[3]
    cfg = Config.parse(load_section(repo / path, "classify"), path)
    assert cfg.epochs >= 1


def test_quality_gate_passes_a_model_that_learnt_and_fails_one_trained_on_shuffled_labels(
        tmp_path):
    frame = letterboxed_frame(tmp_path, train_counts=(30, 30, 30, 30))
    shuffled = frame.copy()
    order = np.random.default_rng(0).permutation(len(frame))
    shuffled[["label_index", "label"]] = frame[["label_index", "label"]].to_numpy()[order]
    verdicts = {}
    for name, table in (("true", frame), ("shuffled", shuffled)):
        handle = tmp_path / f"{name}.handle.json"
        handle.write_text(pack_tfrecords(table, tmp_path / name, target_shard_bytes=64 * 1024)
                          .to_json())
        verdicts[name] = GATES["classify"].judge(run(handle, tmp_path / f"out_{name}",
                                                     model="small_cnn"))
    assert verdicts["true"].passed, verdicts["true"].sentence
    assert not verdicts["shuffled"].passed, verdicts["shuffled"].sentence
    assert "did not learn" in verdicts["shuffled"].sentence
    # 30 test images in 4 classes: luck alone scatters the mean class accuracy by ~0.08, so
    # the gate asks for two of those rather than the bare 0.05
    assert verdicts["shuffled"].margin > 0.14
