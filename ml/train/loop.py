"""Pieces every task's training loop shares: seeding, placing (and DDP-wrapping) a model,
mixed precision on CUDA, evaluating with every rank's BatchNorm statistics alike, resuming from
the newest checkpoint, saving one per epoch and drawing the curves.

Checkpoints live in `<out>/checkpoints` (ml.train.checkpoint). Each one also carries the
reporter's metric history, so a resumed run's curves cover the whole training, not only the part
after the restart.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ml.train.fingerprint import stored_fingerprint
from ml.train.checkpoint import (checkpoint_path, latest_checkpoint, load_checkpoint,
                                 save_checkpoint, unwrap)
from ml.train.curves import plot_curves
from ml.train.ddp import DistEnv
from ml.train.report import Reporter

CHECKPOINTS = "checkpoints"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (every rank alike: models start identical)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def place(model: nn.Module, env: DistEnv, channels_last: bool = False) -> nn.Module:
    """The model on env's device (channels_last on CUDA when asked), wrapped in DDP when the
    run has several processes."""
    model = model.to(env.device)
    if channels_last and env.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if env.distributed:
        ids = [env.device.index] if env.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)
    return model


def autocast(env: DistEnv, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when enabled; full precision otherwise (and always on the CPU)."""
    if enabled and env.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler=None) -> None:
    """One optimisation step: clear the gradients, back-propagate `loss`, step the optimizer
    and (when given) the learning-rate schedule."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def to_device(batch: torch.Tensor, env: DistEnv, channels_last: bool = False) -> torch.Tensor:
    batch = batch.to(env.device, non_blocking=True)
    if channels_last and env.device.type == "cuda" and batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


@contextlib.contextmanager
def evaluating(model: nn.Module, env: DistEnv):
    """The unwrapped model in eval mode, every rank holding rank 0's buffers (each rank's last
    training forward updated its own BatchNorm statistics, and rank 0's are what is saved);
    the training flag is restored afterwards."""
    net = unwrap(model)
    env.broadcast_buffers(net)
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def resume(out: Path, modules: dict[str, Any], reporter: Reporter,
           env: DistEnv) -> tuple[int, int, Path | None]:
    """(epochs completed, global step, checkpoint path) from the newest checkpoint in
    `<out>/checkpoints`, with `modules` and the reporter's history restored; (0, 0, None) when
    there is none."""
    path = latest_checkpoint(out / CHECKPOINTS)
    if path is None:
        return 0, 0, None
    state = load_checkpoint(path, modules, map_location=env.device)
    reporter.history = list(state["extra"].get("history", []))
    reporter.log(f"resuming from {path} (epoch {state['epoch']}, step {state['step']})")
    return int(state["epoch"]), int(state["step"]), path


def save_epoch(out: Path, epoch: int, step: int, modules: dict[str, Any], reporter: Reporter,
               env: DistEnv, extra: dict[str, Any] | None = None) -> Path:
    """Rank 0 writes the checkpoint of `epoch` (1-based, completed); every rank waits for it.
    Returns its path."""
    folder = out / CHECKPOINTS
    if env.is_main:
        save_checkpoint(folder, epoch, step, modules,
                        extra={**(extra or {}), "history": reporter.history,
                               "fingerprint": stored_fingerprint(folder)})
        reporter.artifact("checkpoint", checkpoint_path(folder, epoch))
    env.barrier()
    return checkpoint_path(folder, epoch)


def write_curves(out: Path, reporter: Reporter, env: DistEnv, panels: dict[str, list[str]],
                 title: str) -> Path:
    """Rank 0 draws `<out>/curves.png` from the reporter's history and reports it; returns its
    path on every rank."""
    path = out / "curves.png"
    if env.is_main:
        plot_curves(reporter.history, panels, path, title=title)
        reporter.artifact("curves_png", path)
    return path
