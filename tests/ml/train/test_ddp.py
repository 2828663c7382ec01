"""Two-process DDP training on the CPU (gloo) under torchrun: the face trainer splits the identities
between ranks, trains, gathers the evaluation and writes one checkpoint and one summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from demo.face_inputs import build_face_inputs
from ml.datasets.recordio import RecordIODataset
from ml.models.face_model import build_face_model
from ml.train.checkpoint import load_checkpoint
from ml.train.ddp import DistEnv
from ml.train.face import Verifier

REPO = Path(__file__).resolve().parents[3]


def torchrun() -> list[str]:
    launcher = Path(sys.executable).parent / "torchrun"
    return [str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.slow
def test_two_process_torchrun_on_cpu_trains_and_reports_once(tmp_path):
    inputs = build_face_inputs(tmp_path / "data", n_identities=30, per_identity=4, n_pairs=20,
                               workers=2)
    out = tmp_path / "run"
    options = ["epochs=1", "batch_size=8", "max_steps_per_epoch=2", "num_workers=0", "threads=1",
               "embedding_size=32"]
    command = [*torchrun(), "--standalone", "--nproc_per_node=2", "-m", "ml.train", "face",
               "--config", str(REPO / "config" / "train.yaml"), "--out", str(out),
               "--input", f"recordio={inputs.recordio_json}",
               "--input", f"validation={inputs.validation_json}",
               "--events", str(out / "events.jsonl"),
               *[a for o in options for a in ("--set", o)]]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, f"torchrun failed (a rank exited non-zero):\n{done.stderr[-4000:]}"

    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    summaries = [e for e in events if e["event"] == "summary"]
    assert len(summaries) == 1                                   # rank 0 reports, rank 1 does not
    summary = summaries[0]
    assert summary["world_size"] == 2 and summary["steps"] == 2
    epoch = [e for e in events if e["event"] == "metric" and "epoch_loss" in e][0]
    assert epoch["images"] == 2 * 2 * 8                          # 2 ranks x 2 steps x 8 images
    assert [p.name for p in (out / "checkpoints").glob("*.pt")] == ["epoch_0001.pt"]
    assert Path(summary["checkpoint"]) == out / "checkpoints" / "epoch_0001.pt"
    assert json.loads((out / "summary.json").read_text()) == {
        k: v for k, v in summary.items() if k not in ("event", "time")}

    # the pairs both ranks embedded, gathered in order, score as one process scores them
    state = load_checkpoint(summary["checkpoint"])
    model = build_face_model("iresnet_small", 32, occlusion_head=True)
    model.load_state_dict(state["state"]["model"])
    assert RecordIODataset(inputs.recordio).num_classes == state["extra"]["num_classes"]
    verifier = Verifier(inputs.validation, DistEnv(0, 1, 0, torch.device("cpu")), 64, False, False)
    alone = verifier.score_model(model)
    assert alone["val_accuracy"] == pytest.approx(summary["val_accuracy"])
    assert alone["val_threshold_faces_val"] == pytest.approx(summary["val_threshold_faces_val"])
