"""Image-to-image training (seed 004): a small U-Net maps each before image to its after image.

Input `splits`: the before/after dataset's split table (Parquet; group_id = pair, role, file =
resized image, split, width, height).

- The safe-dimensions rule is checked before any training: the training crop and every image
  the model will see must have sides divisible by 2**depth (ml.models.unet.check_input_size);
  otherwise a ConfigError names the size, the depth and the nearest safe size.
- Training: random `crop_width` x `crop_height` windows of the train pairs (the same window of
  both images, flipped together), L1 loss; `crop_width: 0` trains on whole images.
- Evaluation on whole images of `eval_split` (test): mean L1 and mean PSNR (dB, pixels in
  [0, 1], output clipped to [0, 1]) of the U-Net, and the same figures for the identity mapping
  (output = input), which the model must beat. The val split, when it has pairs, is scored every
  epoch for the curves.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ml.datasets.before_after import BeforeAfterPairs, pair_table
from ml.errors import ConfigError, SourceError
from ml.eval.pictures import image_grid_picture
from ml.imageio import read_header
from ml.models.unet import UNet, check_input_size
from ml.options import Bool, Int, Text
from ml.train.checkpoint import unwrap
from ml.train.config import BatchSize, Count, Epochs, Optimizer, Rate, TaskOptions, Workers
from ml.train.ddp import DistEnv
from ml.train.loop import (autocast, evaluating, optimizer_step, place, resume, save_epoch,
                           seed_everything, to_device, write_curves)
from ml.train.report import Reporter
from ml.train.schedule import build_optimizer, warmup_cosine
from ml.train.tasks import TASKS


class Config(TaskOptions):
    """Defaults are the CPU demo (sample pairs: letterboxed 256x192, ~37 train pairs)."""

    base: Int = Field(8, description="channels of the first level (doubling per level)")
    depth: Int = Field(4, description="2x poolings; image sides must divide by 2**depth")
    residual: Bool = Field(True, description="predict a correction to the input (starts as identity)")
    crop_width: Count = Field(128, description="training window; 0 = whole images")
    crop_height: Count = Field(96, description="Training window height (see crop_width)")
    crops_per_pair: Int = Field(4, description="training windows drawn from each pair per epoch")
    epochs: Epochs = Field(12)
    batch_size: BatchSize = Field(8)
    optimizer: Optimizer = Field("adamw")
    lr: Rate = Field(2e-3, description="Peak learning rate, reached after the warmup; then a cosine decay")
    weight_decay: Rate = Field(0.0, description="Weight decay of the optimizer")
    warmup_epochs: Count = Field(1, description="Epochs of linear learning-rate warmup")
    eval_split: Text = Field("test", description="Split evaluated on whole images (L1, PSNR)")
    num_workers: Workers = Field(0)


def read_manifest(inputs: dict[str, str]) -> pd.DataFrame:
    path = TASKS["unet"].load(inputs, "splits")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise SourceError(f"input 'splits': {path} is not a readable Parquet split table "
                          f"({exc})") from None


def image_sizes(manifest: pd.DataFrame, split: str) -> set[tuple[int, int]]:
    """The distinct (width, height) of the split's pair images (from the table's width/height
    columns, or the files' headers)."""
    table, _ = pair_table(manifest, split)
    files = set(table["before"]) | set(table["after"])
    if {"width", "height"} <= set(manifest.columns):
        rows = manifest.loc[manifest["file"].isin(files)]
        return {(int(w), int(h)) for w, h in zip(rows["width"], rows["height"])}
    return {(h.width, h.height) for h in map(read_header, sorted(files))}


def check_sizes(cfg: Config, manifest: pd.DataFrame, splits: list[str]) -> None:
    """The safe-dimensions rule for the training window and every image of `splits`."""
    if cfg.crop_width or cfg.crop_height:
        if cfg.crop_width < 1 or cfg.crop_height < 1:
            raise ConfigError(f"unet: crop {cfg.crop_width}x{cfg.crop_height}; give both sides, "
                              "or 0 for both to train on whole images")
        check_input_size(cfg.crop_width, cfg.crop_height, cfg.depth)
    for split in splits:
        for width, height in sorted(image_sizes(manifest, split)):
            check_input_size(width, height, cfg.depth)


def psnr_db(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [0, 1] images (N, C, H, W); 100 dB for identical images."""
    mse = (output - target).pow(2).flatten(1).mean(1)
    return torch.where(mse > 0, -10 * torch.log10(mse.clamp_min(1e-20)),
                       torch.full_like(mse, 100.0))


@torch.no_grad()
def score(model: torch.nn.Module, pairs: BeforeAfterPairs, cfg: Config,
          env: DistEnv) -> dict[str, float]:
    """Mean per-image L1 and PSNR of the model (nn.Identity(): the identity baseline) on whole
    images; each rank scores every world_size-th pair, the per-image figures are gathered."""
    figures = []
    with evaluating(model, env) as net:
        for before, after in DataLoader(Subset(pairs, range(env.rank, len(pairs),
                                                           env.world_size)),
                                        batch_size=1, num_workers=cfg.num_workers):
            before, after = to_device(before, env, cfg.channels_last), to_device(after, env)
            with autocast(env, cfg.amp):
                output = net(before)
            output = output.float().clamp(0, 1)
            l1 = (output - after).abs().flatten(1).mean(1)
            figures.append(torch.stack([l1, psnr_db(output, after)], dim=1))
    local = torch.cat(figures) if figures else torch.zeros(0, 2, device=env.device)
    every = env.gather_cat(local)
    return {"l1": float(every[:, 0].mean()), "psnr_db": float(every[:, 1].mean())}


PICTURE_PAIRS = 4        # test pairs in the input / prediction / target picture


def prediction_picture(model: torch.nn.Module, pairs: BeforeAfterPairs, cfg: Config,
                       env: DistEnv, path: Path, title: str) -> Path:
    """Input, prediction and target of the first PICTURE_PAIRS pairs, whole images (rank 0
    only, after training: no collective calls)."""
    net = unwrap(model)
    net.eval()
    rows = []
    with torch.no_grad():
        for i in range(min(PICTURE_PAIRS, len(pairs))):
            before, after = pairs[i]
            with autocast(env, cfg.amp):
                output = net(to_device(before[None], env, cfg.channels_last))
            images = (before, output.float().clamp(0, 1)[0].cpu(), after)
            rows.append([t.permute(1, 2, 0).numpy() for t in images])
    return image_grid_picture(rows, ["input", "prediction", "target"], path, title)


def train(cfg: Config, inputs: dict[str, str], out: Path, reporter: Reporter,
          env: DistEnv) -> dict[str, Any]:
    started = time.perf_counter()
    manifest = read_manifest(inputs)
    present = set(manifest["split"].unique()) if "split" in manifest.columns else set()
    val_split = "val" if "val" in present and cfg.eval_split != "val" else None
    check_sizes(cfg, manifest, ["train", cfg.eval_split] + ([val_split] if val_split else []))
    crop = (cfg.crop_width, cfg.crop_height) if cfg.crop_width else None
    train_pairs = BeforeAfterPairs(manifest, "train", crop=crop, flip=True)
    eval_pairs = BeforeAfterPairs(manifest, cfg.eval_split)
    val_pairs = BeforeAfterPairs(manifest, val_split) if val_split else None
    reporter.log(f"{len(train_pairs)} train pairs, {len(eval_pairs)} {cfg.eval_split} pairs"
                 + (f", {len(val_pairs)} val pairs" if val_pairs else "")
                 + f"; {train_pairs.incomplete + eval_pairs.incomplete} incomplete pairs left out")

    repeated = torch.utils.data.ConcatDataset([train_pairs] * max(1, cfg.crops_per_pair))
    sampler = DistributedSampler(repeated, num_replicas=env.world_size, rank=env.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=True)
    if len(sampler) < cfg.batch_size:
        raise ConfigError(f"unet: {len(repeated)} training windows per epoch are fewer than one "
                          f"batch of {cfg.batch_size} per process; lower batch_size or raise "
                          "crops_per_pair")
    loader = DataLoader(repeated, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                        num_workers=cfg.num_workers, pin_memory=env.device.type == "cuda")

    seed_everything(cfg.seed)
    model = place(UNet(3, 3, cfg.base, cfg.depth, cfg.residual), env, cfg.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    steps_per_epoch = len(loader)
    scheduler = warmup_cosine(optimizer, cfg.epochs * steps_per_epoch,
                              cfg.warmup_epochs * steps_per_epoch)
    modules = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    start_epoch, step, checkpoint = resume(out, modules, reporter, env)
    reporter.plan(cfg.epochs, steps_per_epoch, cfg.batch_size * env.world_size, start_step=step)
    first_step = step + 1
    val_identity = score(nn.Identity(), val_pairs, cfg, env) if val_pairs is not None else None

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        losses = []
        for before, after in loader:
            before = to_device(before, env, cfg.channels_last)
            after = to_device(after, env, cfg.channels_last)
            with autocast(env, cfg.amp):
                output = model(before)
            loss = F.l1_loss(output.float(), after)
            optimizer_step(loss, optimizer, scheduler)
            step += 1
            if step == first_step:
                reporter.images("before_after", step, torch.cat([before[:8], after[:8]]))
            losses.append(env.mean(loss.item()))
            reporter.metric(step, epoch + 1, loss=losses[-1], lr=scheduler.get_last_lr()[0])
        if val_pairs is not None:
            val = score(model, val_pairs, cfg, env)
            reporter.evaluation(step, epoch + 1, val_l1=val["l1"], val_psnr_db=val["psnr_db"],
                                val_identity_l1=val_identity["l1"],
                                val_identity_psnr_db=val_identity["psnr_db"])
        reporter.log(f"epoch {epoch + 1}/{cfg.epochs}: train L1 {np.mean(losses):.4f}")
        checkpoint = save_epoch(out, epoch + 1, step, modules, reporter, env,
                                extra={"base": cfg.base, "depth": cfg.depth,
                                       "residual": cfg.residual})

    test, identity = score(model, eval_pairs, cfg, env), score(nn.Identity(), eval_pairs, cfg, env)
    reporter.log(f"{cfg.eval_split}: L1 {test['l1']:.4f} (identity {identity['l1']:.4f}), "
                 f"PSNR {test['psnr_db']:.2f} dB (identity {identity['psnr_db']:.2f} dB)")
    curves = write_curves(out, reporter, env,
                          {"train L1 (crops)": ["loss"],
                           "val L1": ["val_l1", "val_identity_l1"],
                           "val PSNR (dB)": ["val_psnr_db", "val_identity_psnr_db"]},
                          f"U-Net depth {cfg.depth}, base {cfg.base}")
    summary = {
        "test_l1": test["l1"],
        "test_psnr_db": test["psnr_db"],
        "identity_l1": identity["l1"],
        "identity_psnr_db": identity["psnr_db"],
        "checkpoint": str(checkpoint),
        "curves_png": str(curves),
        "epochs": cfg.epochs,
        "eval_split": cfg.eval_split,
        "eval_pairs": len(eval_pairs),
        "train_pairs": len(train_pairs),
        "depth": cfg.depth,
        "seconds": round(time.perf_counter() - started, 2),
        **({"predictions_png": str(prediction_picture(
            model, eval_pairs, cfg, env, out / "predictions.png",
            f"{cfg.eval_split} pairs: PSNR {test['psnr_db']:.1f} dB "
            f"(input as is: {identity['psnr_db']:.1f} dB)"))} if env.is_main else {}),
    }
    if "predictions_png" in summary:
        reporter.artifact("predictions_png", summary["predictions_png"])
    return summary
