"""Resuming only from checkpoints of the same inputs and config: a model rebuilt after its data
changed trains again from scratch (it used to "resume" from the old data's final checkpoint,
train nothing and report the old figures), and a run that trains nothing says so."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from ml.formats.handles import RecordIOHandle
from ml.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from ml.train.cli import main
from ml.train.fingerprint import input_fingerprint, prepare_checkpoints, run_fingerprint
from tests.ml.train.test_unet import write_pairs

UNET = "unet:\n  base: 4\n  depth: 2\n  crop_width: 32\n  crop_height: 24\n" \
       "  epochs: 2\n  batch_size: 4\n  device: cpu\n"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs"), 64, 48)


def train(config: Path, out: Path, splits: Path, *extra: str) -> tuple[dict, list[str]]:
    torch.set_num_threads(2)
    logs: list[str] = []

    def sink(event):
        if event["event"] == "log":
            logs.append(event["message"])

    summary = main(["unet", "--config", str(config), "--out", str(out),
                    "--input", f"splits={splits}", *extra], sinks=[sink])
    return summary, logs


def test_changed_inputs_or_config_start_fresh_and_unchanged_ones_resume(pairs, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(UNET)
    out = tmp_path / "out"
    first, _ = train(config, out, pairs)
    assert first["trained_epochs"] == 2
    figures = json.loads((out / "summary.json").read_text())

    again, logs = train(config, out, pairs)             # same data, same config: nothing to do
    assert again["trained_epochs"] == 0
    assert any("nothing to train" in m for m in logs)
    assert json.loads((out / "summary.json").read_text()) == figures   # figures not overwritten

    fewer = pd.read_parquet(pairs)
    fewer = fewer.loc[fewer["group_id"] != fewer["group_id"].iloc[0]]   # one pair removed
    changed = tmp_path / "fewer.parquet"
    fewer.to_parquet(changed)
    retrained, logs = train(config, out, changed)
    assert retrained["trained_epochs"] == 2, "the old final checkpoint must not be resumed"
    assert any("starting fresh" in m and "inputs changed" in m and "splits" in m for m in logs)
    assert (out / "checkpoints.previous").is_dir()
    state = load_checkpoint(list_checkpoints(out / "checkpoints")[-1])
    assert state["extra"]["fingerprint"]["inputs"]["splits"] == input_fingerprint(changed)

    config.write_text(UNET.replace("batch_size: 4", "batch_size: 2"))
    _, logs = train(config, out, changed)
    assert any("config changed" in m and "batch_size 4 -> 2" in m for m in logs)

    config.write_text(UNET.replace("batch_size: 4", "batch_size: 2").replace("device: cpu",
                                                                              "device: auto"))
    resumed, _ = train(config, out, changed)             # the device is not what is learned
    assert resumed["trained_epochs"] == 0

    forced, logs = train(config, out, changed, "--fresh")
    assert forced["trained_epochs"] == 2 and any("fresh: true was asked" in m for m in logs)


def test_checkpoints_from_before_fingerprints_are_not_resumed(tmp_path):
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder, 3, 30, {"model": torch.nn.Linear(2, 2)})    # as written before
    reason = prepare_checkpoints(folder, {"inputs": {}, "config": {}})
    assert "no fingerprint" in reason
    assert not list(folder.glob("*.pt")) and (tmp_path / "checkpoints.previous" / "epoch_0003.pt").exists()


def test_a_handle_is_fingerprinted_by_content_not_by_where_it_lives(tmp_path):
    def handle(folder: str, sha: str) -> Path:
        h = RecordIOHandle(rec_path=f"{folder}/train.rec", idx_path=f"{folder}/train.idx",
                           property_path=f"{folder}/property", num_images=642, num_classes=9,
                           image_size=(112, 112), rec_sha256=sha)
        path = tmp_path / f"{folder.strip('/').replace('/', '_')}{sha}.handle.json"
        path.write_text(h.to_json())
        return path

    a = input_fingerprint(handle("/o/.recordio.v-1-aaaaaaaa", "x"))
    assert a == input_fingerprint(handle("/o/.recordio.v-2-bbbbbbbb", "x"))   # re-packed, same bytes
    assert a != input_fingerprint(handle("/o/.recordio.v-2-bbbbbbbb", "y"))


def test_the_run_fingerprint_leaves_out_how_the_run_is_executed():
    base = {"lr": 0.1, "epochs": 2, "device": "cpu", "num_workers": 0, "eval_every": 1}
    other = {**base, "device": "cuda", "num_workers": 8, "eval_every": 4}
    assert run_fingerprint(base, {}) == run_fingerprint(other, {})
    assert run_fingerprint(base, {}) != run_fingerprint({**base, "lr": 0.2}, {})
