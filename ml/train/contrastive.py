"""Temporal contrastive pretraining (seed 001): SimCLR on frames of object sequences.

Input `h5_store`: the HDF5 image store handle (sequences of frames, a class per sequence).

- Positives: an anchor frame and a partner frame of the same sequence within `window` frames
  (ml.datasets.TemporalPairDataset), each independently augmented; NT-Xent over the batch
  (global batch under DDP), other frames of the anchor's sequence left out of the negatives.
- Backbone: `small_cnn` for the CPU demo, `vgg16` / `vgg16_bn` (seed 001's) or a ResNet
  (ml.models.backbones), random initialisation, a projection head on top (ml.models.simclr).
- Evaluation: the store's sequences are split per class into training and held-out sequences
  (`holdout_fraction`, seeded). Training sees only the training sequences. Each epoch a weighted
  kNN (ml.eval.knn) classifies every held-out frame by its class, with the training frames as
  the bank, using backbone features. The same evaluation of the same architecture at its random
  initialisation, in the same run, is the baseline the learned features must beat.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
import torchvision.transforms as T

from ml.datasets import H5StoreDataset, TemporalPairDataset
from ml.datasets.h5_store import read_store_image
from ml.errors import ConfigError, DatasetError
from ml.eval.knn import knn_accuracy
from ml.eval.pictures import image_grid_picture
from ml.formats.h5_store import H5StoreIndex
from ml.models.backbones import (IMAGENET_MEAN, IMAGENET_STD, SMALL_CNN_WIDTHS,
                                 build_backbone, input_transform)
from ml.models.simclr import SimCLR, nt_xent_loss
from ml.options import Bool, Float, Int, Text
from ml.train.config import BatchSize, Count, Epochs, Fraction, Optimizer, Rate, TaskOptions, Workers
from ml.train.ddp import DistEnv
from ml.train.loop import (autocast, evaluating, optimizer_step, place, resume, save_epoch,
                           seed_everything, to_device, write_curves)
from ml.train.report import Reporter
from ml.train.schedule import build_optimizer, warmup_cosine
from ml.train.tasks import TASKS


class Config(TaskOptions):
    """Defaults are the CPU demo (sample store: 4 classes x 6 sequences x 10 frames, 64 px)."""

    backbone: Text = Field("small_cnn", description="small_cnn, vgg16, vgg16_bn, resnet18/34/50")
    widths: list[Int] = Field(default_factory=lambda: list(SMALL_CNN_WIDTHS), description="small_cnn only")
    image_size: Int = Field(64, description="Side of the square views, in pixels")
    window: Int = Field(5, description="partner frames satisfy |frame_a - frame_b| <= window")
    epochs: Epochs = Field(6)
    batch_size: BatchSize = Field(32)
    optimizer: Optimizer = Field("adamw")
    lr: Rate = Field(5e-4, description="Peak learning rate, reached after the warmup; then a cosine decay")
    weight_decay: Rate = Field(0.1, description="Weight decay of the optimizer")
    warmup_epochs: Count = Field(1, description="Epochs of linear learning-rate warmup")
    temperature: Rate = Field(0.5, description="NT-Xent temperature")
    proj_hidden: Int = Field(256, description="Width of the projection head's hidden layer")
    proj_dim: Int = Field(64, description="Output width of the projection head")
    mask_same_sequence: Bool = Field(True, description="other frames of the anchor's sequence are not negatives")
    crop_scale_min: Fraction = Field(0.5, description="RandomResizedCrop scale range (crop_scale_min, 1)")
    color_jitter: Rate = Field(0.4, description="brightness, contrast and saturation jitter strength")
    hue_jitter: Float = Field(0.0, description="0..0.5 (0.5: any hue)")
    grayscale: Fraction = Field(0.2, description="probability of a grey view")
    holdout_fraction: Fraction = Field(0.25, description="of each class's sequences, held out as kNN queries")
    knn_k: Int = Field(10, description="Neighbours of the kNN evaluation")
    knn_temperature: Rate = Field(0.07, description="Temperature of the kNN evaluation's weighted vote")
    num_workers: Workers = Field(0)


def split_sequences(index: H5StoreIndex, holdout_fraction: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) sequence numbers: per class, round(fraction x its sequences) held
    out (at least one when the class has two or more, never all of them), chosen by `seed`."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"contrastive: holdout_fraction={holdout_fraction}; use a fraction "
                          "strictly between 0 and 1 of each class's sequences")
    starts = index.sequence_start[:-1]
    sequence_class = index.class_index[starts]
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for c in np.unique(sequence_class):
        members = np.flatnonzero(sequence_class == c)
        count = min(len(members) - 1, max(1, round(holdout_fraction * len(members))))
        held += rng.choice(members, size=count, replace=False).tolist() if count > 0 else []
    held_out = np.array(sorted(held), dtype=np.int64)
    if held_out.size == 0:
        raise DatasetError(f"{index.path}: no class has two or more sequences, so none can be "
                           "held out for the kNN evaluation; add sequences to the store")
    training = np.setdiff1d(np.arange(len(starts)), held_out)
    return training, held_out


def rows_of(index: H5StoreIndex, sequences: np.ndarray) -> np.ndarray:
    """Store rows (frames) of the given sequences."""
    return np.flatnonzero(np.isin(index.sequence, sequences))


class SequencePairs(Dataset):
    """The temporal pairs of some store rows, as (view_a, view_b, sequence, fallback)."""

    def __init__(self, pairs: TemporalPairDataset, rows: np.ndarray):
        self.pairs = pairs
        self.rows = rows
        self.sequence = pairs.reader.index.sequence

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[Any, Any, int, bool]:
        row = int(self.rows[i])
        view_a, view_b, _, fallback = self.pairs[row]
        return view_a, view_b, int(self.sequence[row]), fallback


def train_transform(cfg: Config) -> T.Compose:
    jitter = cfg.color_jitter
    return T.Compose([
        T.RandomResizedCrop(cfg.image_size, scale=(cfg.crop_scale_min, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(jitter, jitter, jitter, cfg.hue_jitter)], p=0.8),
        T.RandomGrayscale(p=cfg.grayscale),
        T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def build_model(cfg: Config) -> SimCLR:
    backbone = build_backbone(cfg.backbone, cfg.image_size, widths=cfg.widths)
    return SimCLR(backbone, cfg.proj_hidden, cfg.proj_dim)


@torch.no_grad()
def store_features(model: torch.nn.Module, frames: H5StoreDataset, cfg: Config,
                   env: DistEnv) -> torch.Tensor:
    """Backbone features of every frame of the store, in row order (each rank embeds every
    world_size-th frame; the rows are gathered back on every rank)."""
    mine = list(range(env.rank, len(frames), env.world_size))
    loader = DataLoader(Subset(frames, mine), batch_size=max(cfg.batch_size, 64),
                        num_workers=cfg.num_workers)
    parts = []
    with evaluating(model, env) as net:
        for images, _ in loader:
            with autocast(env, cfg.amp):
                parts.append(net.features(to_device(images, env, cfg.channels_last)).float())
        feature_dim = net.backbone.feature_dim
    local = torch.cat(parts) if parts else torch.zeros(0, feature_dim, device=env.device)
    rows = env.gather_cat(torch.tensor(mine, dtype=torch.long, device=env.device))
    features = env.gather_cat(local)
    return features[torch.argsort(rows)].cpu()


NEIGHBOUR_QUERIES, NEIGHBOURS = 4, 5       # rows and neighbours of the nearest-neighbour picture


def neighbours_picture(features: torch.Tensor, frames: H5StoreDataset, bank_rows: np.ndarray,
                       query_rows: np.ndarray, path: Path, title: str) -> Path:
    """Held-out query frames (spread over the held-out set) and their nearest training frames
    by cosine similarity, each captioned with its class and the similarity."""
    normed = torch.nn.functional.normalize(features.float(), dim=1)
    picks = query_rows[np.linspace(0, len(query_rows) - 1, NEIGHBOUR_QUERIES).astype(int)] \
        if len(query_rows) else query_rows
    rows, captions = [], []
    for query in np.unique(picks):
        similarity = normed[bank_rows] @ normed[int(query)]
        best = torch.topk(similarity, min(NEIGHBOURS, len(bank_rows))).indices.numpy()
        shown = [int(query)] + [int(bank_rows[b]) for b in best]
        rows.append([np.asarray(read_store_image(frames.reader, r)) for r in shown])
        names = [frames.classes[int(frames.labels[r])] for r in shown]
        captions.append([f"query: {names[0]}"] + [f"{n} ({float(similarity[b]):.2f})"
                                                  for n, b in zip(names[1:], best)])
    return image_grid_picture(rows, ["held-out query"] + [f"neighbour {i + 1}" for i in
                                                          range(NEIGHBOURS)],
                              path, title, captions)


def heldout_knn(model: torch.nn.Module, frames: H5StoreDataset, bank_rows: np.ndarray,
                query_rows: np.ndarray, cfg: Config, env: DistEnv) -> tuple[float, torch.Tensor]:
    """kNN accuracy of the held-out frames' classes, the training frames as the bank; and the
    features it was computed from."""
    features = store_features(model, frames, cfg, env)
    labels = torch.from_numpy(frames.labels)
    return knn_accuracy(features[bank_rows], labels[bank_rows], features[query_rows],
                        labels[query_rows], k=cfg.knn_k, temperature=cfg.knn_temperature), features


def train(cfg: Config, inputs: dict[str, str], out: Path, reporter: Reporter,
          env: DistEnv) -> dict[str, Any]:
    started = time.perf_counter()
    handle = TASKS["contrastive"].load(inputs, "h5_store")
    pairs = TemporalPairDataset(handle, window=cfg.window, transform=train_transform(cfg))
    frames = H5StoreDataset(pairs.reader, transform=input_transform(cfg.image_size))
    index = frames.index
    train_seq, heldout_seq = split_sequences(index, cfg.holdout_fraction, cfg.seed)
    bank_rows, query_rows = rows_of(index, train_seq), rows_of(index, heldout_seq)
    dataset = SequencePairs(pairs, bank_rows)
    per_step = cfg.batch_size * env.world_size
    if len(dataset) < per_step:
        raise ConfigError(f"contrastive: {len(dataset)} training frames are fewer than one "
                          f"batch of {cfg.batch_size} x {env.world_size} process(es); lower "
                          "batch_size")
    reporter.log(f"{handle.path}: {len(train_seq)} training sequences ({len(bank_rows)} frames), "
                 f"{len(heldout_seq)} held out ({len(query_rows)} frames); "
                 f"{pairs.fallback_count} frames have no partner within {cfg.window} frames")

    sampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                        num_workers=cfg.num_workers, pin_memory=env.device.type == "cuda")

    seed_everything(cfg.seed)
    model = build_model(cfg)
    random_init = copy.deepcopy(model).to(env.device)
    model = place(model, env, cfg.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    steps_per_epoch = len(loader)
    scheduler = warmup_cosine(optimizer, cfg.epochs * steps_per_epoch,
                              cfg.warmup_epochs * steps_per_epoch)
    modules = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    start_epoch, step, checkpoint = resume(out, modules, reporter, env)
    reporter.plan(cfg.epochs, steps_per_epoch, cfg.batch_size * env.world_size, start_step=step)
    first_step = step + 1

    random_knn, _ = heldout_knn(random_init, frames, bank_rows, query_rows, cfg, env)
    del random_init
    reporter.log(f"kNN accuracy of the random-init {cfg.backbone}: {random_knn:.3f}")
    knn = None
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        fallbacks = 0
        for view_a, view_b, sequence, fallback in loader:
            views = to_device(torch.cat([view_a, view_b]), env, cfg.channels_last)
            with autocast(env, cfg.amp):
                z_a, z_b = model(views).chunk(2)
            groups = sequence.to(env.device) if cfg.mask_same_sequence else None
            loss = nt_xent_loss(z_a, z_b, cfg.temperature, groups)
            optimizer_step(loss, optimizer, scheduler)
            step += 1
            if step == first_step:
                reporter.images("two_views", step, torch.cat([view_a[:8], view_b[:8]]))
            fallbacks += int(fallback.sum())
            reporter.metric(step, epoch + 1, loss=env.mean(loss.item()),
                            lr=scheduler.get_last_lr()[0])
        knn, features = heldout_knn(model, frames, bank_rows, query_rows, cfg, env)
        reporter.evaluation(step, epoch + 1, knn_accuracy=knn,
                            knn_accuracy_random_init=random_knn, fallback_pairs=env.sum(fallbacks))
        checkpoint = save_epoch(out, epoch + 1, step, modules, reporter, env,
                                extra={"backbone": cfg.backbone, "image_size": cfg.image_size})

    if knn is None:                          # resumed after the last epoch: score what was saved
        knn, features = heldout_knn(model, frames, bank_rows, query_rows, cfg, env)
    curves = write_curves(out, reporter, env,
                          {"NT-Xent loss": ["loss"],
                           "held-out kNN accuracy": ["knn_accuracy", "knn_accuracy_random_init"]},
                          f"temporal SimCLR, {cfg.backbone}")
    losses = reporter.series("loss")[1]
    summary = {
        "knn_accuracy": knn,
        "knn_accuracy_random_init": random_knn,
        "checkpoint": str(checkpoint),
        "curves_png": str(curves),
        "epochs": cfg.epochs,
        "final_loss": losses[-1] if losses else float("nan"),
        "backbone": cfg.backbone,
        "train_sequences": int(len(train_seq)),
        "heldout_sequences": int(len(heldout_seq)),
        "bank_frames": int(len(bank_rows)),
        "query_frames": int(len(query_rows)),
        "frames_without_partner": int(pairs.fallback_count),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if env.is_main:
        summary["neighbours_png"] = str(neighbours_picture(
            features, frames, bank_rows, query_rows, out / "neighbours.png",
            f"nearest training frames, kNN accuracy {knn:.2f}"))
        reporter.artifact("neighbours_png", summary["neighbours_png"])
    return summary
