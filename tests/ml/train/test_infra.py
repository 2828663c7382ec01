"""The shared training pieces: configs, checkpoints, schedules, events, inputs."""

from __future__ import annotations

import json

import pytest
import torch

from ml.errors import ConfigError, FormatError, SourceError
from ml.formats.handles import CheckpointHandle, MemfileHandle
from ml.options import Bool, Float, Int, Options, Text
from ml.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from ml.train.config import load_section, parse_overrides
from ml.train.inputs import input_handle, input_path
from ml.train.report import Reporter
from ml.train.schedule import build_optimizer, warmup_cosine


class _Cfg(Options):
    epochs: Int = 2
    lr: Float = 0.1
    backbone: Text = "small"
    amp: Bool = False


def test_config_from_yaml_section_and_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("face:\n  epochs: 5\n  lr: 0.01\nunet:\n  epochs: 1\n")
    values = {**load_section(path, "face"), **parse_overrides(["lr=1e-3", "amp=true"])}
    cfg = _Cfg.parse(values, "train.yaml: face")
    assert (cfg.epochs, cfg.lr, cfg.amp, cfg.backbone) == (5, 1e-3, True, "small")


@pytest.mark.parametrize("values, words", [
    ({"epoch": 3}, ["unknown option", "epoch", "epochs"]),
    ({"epochs": 2.5}, ["epochs 2.5", "valid integer"]),
    ({"lr": "fast"}, ["lr", "number"]),
    ({"amp": 1}, ["amp 1", "valid boolean"]),
])
def test_config_errors_name_the_key(values, words):
    with pytest.raises(ConfigError) as err:
        _Cfg.parse(values, "config/train.yaml: face")
    for w in words:
        assert w in str(err.value)


def test_missing_config_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_section(tmp_path / "nope.yaml", "face")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])


def test_checkpoints_keep_newest_and_resume(tmp_path):
    model = torch.nn.Linear(4, 2)
    opt = build_optimizer(model.parameters(), "sgd", lr=0.1, weight_decay=0.0)
    for epoch in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(epoch)
        save_checkpoint(tmp_path, epoch, epoch * 10, {"model": model, "optimizer": opt},
                        extra={"num_classes": 2}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch_0002.pt", "epoch_0003.pt"]
    fresh = torch.nn.Linear(4, 2)
    state = load_checkpoint(latest_checkpoint(tmp_path), {"model": fresh})
    assert state["epoch"] == 3 and state["step"] == 30 and state["extra"] == {"num_classes": 2}
    assert torch.all(fresh.weight == 3)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary files left behind"


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, 1, 1, {"model": torch.nn.Linear(2, 2)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(FormatError, match="epoch_0001.pt"):
        load_checkpoint(path, {"model": torch.nn.Linear(2, 2)})


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, 1, 1, {"model": torch.nn.Linear(2, 2)})
    with pytest.raises(FormatError, match="does not fit this run's model"):
        load_checkpoint(path, {"model": torch.nn.Linear(3, 2)})


def test_checkpoint_handle_loads_through_json(tmp_path):
    path = save_checkpoint(tmp_path, 4, 40, {"model": torch.nn.Linear(2, 2)})
    handle = CheckpointHandle(task="face", checkpoint=str(path), out_dir=str(tmp_path),
                              summary={"val_accuracy": 0.93})
    again = CheckpointHandle.from_json(handle.to_json())
    assert again == handle and load_checkpoint(again.checkpoint)["epoch"] == 4


def test_warmup_then_cosine():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=100, warmup_steps=10, min_ratio=0.0)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))          # rising
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))           # then falling
    assert lrs[-1] < 0.01


def test_reporter_events_history_and_rank_gating(tmp_path):
    seen = []
    rep = Reporter([seen.append], jsonl_path=tmp_path / "events.jsonl")
    rep.log("hello")
    rep.metric(5, epoch=1, loss=0.5)
    rep.finish(val_accuracy=0.9)
    assert [e["event"] for e in seen] == ["log", "metric", "summary"]
    assert rep.series("loss") == ([5], [0.5])
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert lines[-1]["val_accuracy"] == 0.9
    quiet = []
    Reporter([quiet.append], enabled=False).log("rank 1 says nothing")
    assert quiet == []


def test_inputs_name_what_is_missing_or_wrong(tmp_path):
    with pytest.raises(ConfigError, match="--input recordio="):
        input_handle({}, "recordio", MemfileHandle)
    with pytest.raises(SourceError, match="does not exist"):
        input_path({"splits": str(tmp_path / "x.parquet")}, "splits")
    ck = tmp_path / "model.handle.json"
    ck.write_text(CheckpointHandle("face", "c.pt", str(tmp_path), {}).to_json())
    with pytest.raises(ConfigError, match="expected a MemfileHandle"):
        input_handle({"validation": str(ck)}, "validation", MemfileHandle)
