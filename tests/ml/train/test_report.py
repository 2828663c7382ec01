"""What a person sees of a training run: readable progress lines with epoch k of n, images/s and
the ETA; TensorBoard event files with the scalars, input images and pictures; a --help that
names each task's inputs."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ml.train.cli import parser
from ml.train.report import Reporter, Throttle, describe, readable_sink


def test_planned_steps_carry_progress_and_read_as_one_line(monkeypatch):
    clock = iter([100.0, 110.0])           # plan at t=100, step 20 at t=110
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    seen = []
    rep = Reporter([seen.append])
    rep.plan(epochs=4, steps_per_epoch=40, images_per_step=32, start_step=0)
    rep.metric(20, epoch=1, loss=1.23456, lr=0.001)
    event = seen[-1]
    assert event["epochs"] == 4 and event["total_steps"] == 160
    assert event["images_per_s"] == 64.0 and event["eta_s"] == 70.0     # 2 steps/s, 140 left
    assert describe(event) == ("epoch 1/4, step 20/160 (12.5%): loss 1.235, lr 0.001 | "
                               "64 images/s, ETA 1m10s")
    assert "eta_s" not in rep.history[-1], "curves keep the figures only"


def test_evaluations_always_show_and_steps_at_most_every_few_seconds():
    throttle = Throttle(every_s=5.0)
    steps = [{"event": "metric", "step": s, "time": 1000.0 + s, "total_steps": 12, "loss": 1.0}
             for s in range(1, 13)]
    shown = [e["step"] for e in steps if throttle.due(e)]
    assert shown == [1, 6, 11, 12], "the first, one per 5 s, and the last"
    assert throttle.due({"event": "metric", "phase": "eval", "step": 2, "time": 1001.0,
                         "accuracy": 0.5})
    assert throttle.due({"event": "log", "message": "hi"})


def test_the_terminal_gets_readable_lines_not_json(capsys):
    rep = Reporter()                     # the default sink: standalone python -m ml.train
    rep.log("face: 800 images")
    rep.plan(epochs=2, steps_per_epoch=5, images_per_step=8)
    rep.metric(1, epoch=1, loss=2.0)
    rep.evaluation(5, epoch=1, val_accuracy=0.75)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "face: 800 images"
    assert lines[1].startswith("epoch 1/2, step 1/10 (10.0%): loss 2 | ")
    assert lines[2] == "epoch 1/2, step 5/10 (50.0%) evaluation: val_accuracy 0.75"
    assert not any(line.startswith("{") for line in lines)


def test_a_sink_can_write_lines_elsewhere():
    lines = []
    show = readable_sink(lines.append)
    show({"event": "artifact", "name": "curves_png", "path": "/x/curves.png"})
    assert lines == ["curves_png: /x/curves.png"]


def test_tensorboard_event_files_hold_scalars_images_and_pictures(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    picture = tmp_path / "curves.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(picture)
    rep = Reporter([], tensorboard_dir=tmp_path / "tb")
    rep.plan(epochs=1, steps_per_epoch=3, images_per_step=4)
    for step in (1, 2, 3):
        rep.metric(step, epoch=1, loss=1.0 / step, lr=0.1)
    rep.images("train", 1, torch.rand(4, 3, 16, 16) * 2 - 1)
    rep.evaluation(3, epoch=1, val_accuracy=0.8)
    rep.artifact("curves_png", picture)
    rep.finish(val_accuracy=0.8)
    board = EventAccumulator(str(tmp_path / "tb")).Reload()
    tags = board.Tags()
    assert [e.value for e in board.Scalars("train/loss")] == pytest.approx([1.0, 0.5, 1 / 3])
    assert [e.step for e in board.Scalars("eval/val_accuracy")] == [3]
    assert "train/images_per_s" in tags["scalars"] and "train/eta_s" not in tags["scalars"]
    assert "inputs/train" in tags["images"] and "pictures/curves_png" in tags["images"]
    png = board.Images("pictures/curves_png")[0]
    assert (png.width, png.height) == (40, 30)


def test_help_names_the_inputs_each_task_needs():
    text = parser().format_help()
    for task, names in {"face": ["recordio", "validation"], "contrastive": ["h5_store"],
                        "classify": ["tfrecords"], "unet": ["splits"]}.items():
        block = text.split(f"  {task}:")[1]
        assert all(f"    {n}: " in block for n in names), (task, block[:300])
