"""Image-to-image training: the U-Net learns the sample 'edit' (beats output = input on held-out
pairs), resumes from its checkpoint, and refuses sizes its depth cannot halve cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from demo.sample_data import generate_pairs
from ml.errors import ConfigError
from ml.models.unet import UNet
from ml.resize import ResizeItem, ResizeSpec, resize_image
from ml.train.cli import main
from ml.train.config import load_section
from ml.train.ddp import DistEnv
from ml.train.report import Reporter
from ml.train.unet import Config, train

TRAIN_PAIRS, TEST_PAIRS = 10, 4


def write_pairs(root: Path, width: int, height: int) -> Path:
    """Sample before/after pairs letterboxed to width x height, as a split table (Parquet)."""
    spec = ResizeSpec(width=width, height=height, mode="letterbox")
    rows = []
    for i, pair in enumerate(generate_pairs(root / "source", n_pairs=TRAIN_PAIRS + TEST_PAIRS)):
        for role, source in zip(("before", "after"), pair):
            out = root / "resized" / f"{i:04d}_{role}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            resize_image(ResizeItem(f"{i}{role}", str(source), out.stem), spec).save(out)
            rows.append({"group_id": f"{i:04d}", "role": role, "file": str(out), "width": width,
                         "height": height, "split": "train" if i < TRAIN_PAIRS else "test"})
    path = root / "splits.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs"), 64, 48)


def run(splits: Path, out: Path, **options) -> tuple[dict, Reporter]:
    torch.set_num_threads(2)
    values = {"base": 8, "depth": 3, "crop_width": 32, "crop_height": 24, "crops_per_pair": 4,
              "batch_size": 8, "epochs": 6, "lr": 3e-3, "device": "cpu", **options}
    reporter = Reporter(sinks=[])
    summary = train(Config.parse(values, "test"), {"splits": str(splits)}, out,
                    reporter, DistEnv.from_environment("cpu"))
    return summary, reporter


def test_unet_beats_the_identity_mapping_on_test_pairs(pairs, tmp_path):
    summary, _ = run(pairs, tmp_path)
    assert summary["eval_pairs"] == TEST_PAIRS and summary["train_pairs"] == TRAIN_PAIRS
    assert summary["test_l1"] < 0.8 * summary["identity_l1"], summary
    assert summary["test_psnr_db"] > summary["identity_psnr_db"] + 1.0, summary
    assert Path(summary["checkpoint"]).name == "epoch_0006.pt"
    assert Path(summary["curves_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(summary["predictions_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(summary)                                  # metadata-ready


def test_unet_resumes_from_its_last_checkpoint(pairs, tmp_path):
    first, _ = run(pairs, tmp_path, epochs=1)
    second, reporter = run(pairs, tmp_path, epochs=2)
    epochs = [e["epoch"] for e in reporter.history if "loss" in e]
    assert epochs[0] == 1 and epochs[-1] == 2, "the resumed history starts at the first run"
    assert Path(second["checkpoint"]).name == "epoch_0002.pt"
    steps = [e["step"] for e in reporter.history if "loss" in e]
    assert steps == list(range(1, len(steps) + 1)), "steps continue where the first run stopped"


def test_unsafe_image_size_names_size_depth_and_nearest_safe_size(tmp_path):
    splits = write_pairs(tmp_path, 60, 44)
    with pytest.raises(ConfigError) as err:
        run(splits, tmp_path / "out", crop_width=0, crop_height=0)
    message = str(err.value)
    for words in ("60x44", "depth 3", "64x48"):
        assert words in message, message
    assert not (tmp_path / "out" / "checkpoints").exists(), "refused before training"


def test_unsafe_crop_and_tensor_sizes_are_config_errors(pairs, tmp_path):
    with pytest.raises(ConfigError, match="30x24"):
        run(pairs, tmp_path, crop_width=30, crop_height=24)
    with pytest.raises(ConfigError, match="depth 4.*100x60|100x60.*depth 4"):
        UNet(depth=4)(torch.zeros(1, 3, 60, 100))
    assert UNet(depth=4)(torch.zeros(1, 3, 64, 96)).shape == (1, 3, 64, 96)


def test_cli_runs_the_unet_task_from_yaml(pairs, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("unet:\n  base: 4\n  depth: 2\n  crop_width: 32\n  crop_height: 24\n"
                      "  epochs: 1\n  batch_size: 4\n  device: cpu\n")
    events = tmp_path / "events.jsonl"
    summary = main(["unet", "--config", str(config), "--out", str(tmp_path / "out"),
                    "--input", f"splits={pairs}", "--events", str(events)], sinks=[])
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert kinds[-1] == "summary" and "metric" in kinds and "artifact" in kinds
    assert summary["depth"] == 2 and Path(summary["checkpoint"]).is_file()


@pytest.mark.parametrize("path", ["config/train.yaml", "config/gpu.yaml"])
def test_config_sections_are_valid(path):
    repo = Path(__file__).resolve().parents[3]
    cfg = Config.parse(load_section(repo / path, "unet"), path)
    assert cfg.epochs >= 1
