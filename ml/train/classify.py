"""Image classification over the TFRecord stream (seed 003): letterboxed images, imbalanced
classes, a small CNN or a small ViT.

Input `tfrecords`: the TFRecord shards handle (splits train / val / test, `image/class/label`).

- Training streams the train shards (ml.datasets.TFRecordStream: shards split across DataLoader
  workers and DDP ranks) through ClassBalancedStream, which repeats or thins records by class so
  that each class is drawn about equally often (`balance_power`: 1 equal, 0 off). The class
  counts come from one pass over the train shards that parses labels only; the class weights
  used are in the summary.
- The images keep their padding (seed 003 letterboxes rather than crops); they are resized to
  `image_size` (the letterboxed squares stay squares) with light augmentation.
- Every epoch (and at the end) the model classifies every record of `eval_splits`; the summary
  holds accuracy, per-class accuracy, their mean, and the same figures for always predicting the
  majority training class, which the model must beat.

A stream's epoch is the same length on every rank only on average, so an epoch here is a fixed
number of steps (the train records / global batch) drawn from an endless cycle of stream epochs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
import torchvision.transforms as T

from ml.datasets import TFRecordStream
from ml.datasets.balanced_stream import ClassBalancedStream, count_labels
from ml.errors import ConfigError
from ml.eval.classification import ClassAccuracy, class_accuracy, majority_baseline
from ml.eval.pictures import confusion_picture
from ml.formats.handles import TFRecordShardsHandle
from ml.models.backbones import (IMAGENET_MEAN, IMAGENET_STD, SMALL_CNN_WIDTHS,
                                 build_backbone, input_transform)
from ml.models.classifier import ImageClassifier
from ml.options import Int, Text
from ml.train.config import BatchSize, Count, Epochs, Optimizer, Rate, TaskOptions, Workers
from ml.train.ddp import DistEnv
from ml.train.loop import (autocast, evaluating, optimizer_step, place, resume, save_epoch,
                           seed_everything, to_device, write_curves)
from ml.train.report import Reporter
from ml.train.schedule import build_optimizer, warmup_cosine
from ml.train.tasks import TASKS


class Config(TaskOptions):
    """Defaults are the CPU demo (sample iNat: 8 classes, 128 train records, 224 px letterboxed)."""

    model: Text = Field("small_cnn", description="small_cnn | vit | resnet18 | ... (ml.models.backbones)")
    widths: list[Int] = Field(default_factory=lambda: list(SMALL_CNN_WIDTHS), description="small_cnn")
    patch_size: Int = Field(8, description="vit")
    vit_dim: Int = Field(128, description="vit: token width")
    vit_depth: Int = Field(4, description="vit: transformer blocks")
    vit_heads: Int = Field(4, description="vit: attention heads")
    image_size: Int = Field(64, description="Side of the square training crops, in pixels")
    epochs: Epochs = Field(15)
    batch_size: BatchSize = Field(32)
    optimizer: Optimizer = Field("adamw")
    lr: Rate = Field(2e-3, description="Peak learning rate, reached after the warmup; then a cosine decay")
    weight_decay: Rate = Field(0.05, description="Weight decay of the optimizer")
    warmup_epochs: Count = Field(1, description="Epochs of linear learning-rate warmup")
    label_smoothing: Rate = Field(0.0, description="Label smoothing of the cross-entropy")
    dropout: Rate = Field(0.1, description="Dropout before the classifier")
    balance_power: Rate = Field(1.0, description="class-balanced draw: 1 equal classes, 0 the plain stream")
    shuffle_buffer: Count = Field(1024, description="Records shuffled in memory while the TFRecord shards stream")
    eval_splits: list[Text] = Field(default_factory=lambda: ["val", "test"], description="Splits evaluated every epoch (mean class accuracy)")
    num_workers: Workers = Field(0)


def train_transform(cfg: Config) -> T.Compose:
    return T.Compose([
        T.Resize((cfg.image_size, cfg.image_size), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.9, 1.1)),
        T.ColorJitter(0.2, 0.2, 0.2),
        T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def build_model(cfg: Config, num_classes: int) -> ImageClassifier:
    backbone = build_backbone(cfg.model, cfg.image_size, widths=cfg.widths,
                              patch_size=cfg.patch_size, vit_dim=cfg.vit_dim,
                              vit_depth=cfg.vit_depth, vit_heads=cfg.vit_heads)
    return ImageClassifier(backbone, num_classes, cfg.dropout)


def train_class_counts(handle: TFRecordShardsHandle, env: DistEnv,
                       reporter: Reporter) -> tuple[np.ndarray, dict[int, str]]:
    """Records per class in the train split (each rank counts a share of the shards) and the
    class names rank 0's shards carry."""
    shards = [str(p) for p in handle.shard_paths("train")]
    if not shards:
        raise ConfigError(f"tfrecords input has no train shards (splits: {sorted(handle.shards)})")
    counts, names = count_labels(shards[env.rank::env.world_size], handle.num_classes)
    counts = env.gather_cat(torch.from_numpy(counts)[None].to(env.device)).sum(0).cpu().numpy()
    reporter.log(f"train split: {int(counts.sum())} records over {len(shards)} shard(s); "
                 f"per class {counts.tolist()}")
    return counts, names


def cycle(loader: DataLoader, stream: ClassBalancedStream, first_epoch: int) -> Iterator[Any]:
    """Batches from stream epoch `first_epoch`, `first_epoch + 1`, ... without end."""
    epoch = first_epoch
    while True:
        stream.set_epoch(epoch)
        yield from loader
        epoch += 1


@torch.no_grad()
def evaluate(model: torch.nn.Module, streams: list[TFRecordStream], cfg: Config,
             env: DistEnv) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) labels of every record of the eval streams, gathered from all ranks."""
    predicted, labels = [], []
    with evaluating(model, env) as net:
        for stream in streams:
            for images, label in DataLoader(stream, batch_size=max(cfg.batch_size, 64),
                                            num_workers=cfg.num_workers):
                with autocast(env, cfg.amp):
                    logits = net(to_device(images, env, cfg.channels_last))
                predicted.append(logits.argmax(1))
                labels.append(label.to(env.device))
    empty = torch.zeros(0, dtype=torch.long, device=env.device)
    predicted_all = env.gather_cat(torch.cat(predicted) if predicted else empty)
    labels_all = env.gather_cat(torch.cat(labels) if labels else empty)
    return predicted_all.cpu().numpy(), labels_all.cpu().numpy()


def named(values: dict[int, float], names: dict[int, str]) -> dict[str, float]:
    """{class index: value} keyed by 'index name' (or the index) for metadata."""
    return {(f"{c} {names[c]}" if c in names else str(c)): round(float(v), 4)
            for c, v in sorted(values.items())}


def train(cfg: Config, inputs: dict[str, str], out: Path, reporter: Reporter,
          env: DistEnv) -> dict[str, Any]:
    started = time.perf_counter()
    handle = TASKS["classify"].load(inputs, "tfrecords")
    missing = [s for s in cfg.eval_splits if not handle.shard_paths(s)]
    if not cfg.eval_splits or missing:
        raise ConfigError(f"classify: eval_splits {cfg.eval_splits} must name splits the "
                          f"TFRecords have ({sorted(handle.shards)}); missing {missing}")
    counts, names = train_class_counts(handle, env, reporter)
    num_classes = handle.num_classes
    stream = TFRecordStream(handle, train_transform(cfg), split="train", seed=cfg.seed,
                            rank=env.rank, world_size=env.world_size)
    balanced = ClassBalancedStream(stream, counts, cfg.balance_power, cfg.shuffle_buffer,
                                   cfg.seed)
    reporter.log("class-balanced draw, expected copies per record: "
                 f"{named(balanced.class_weights, names)}")
    eval_streams = [TFRecordStream(handle, input_transform(cfg.image_size), split=s,
                                   rank=env.rank, world_size=env.world_size)
                    for s in cfg.eval_splits]
    loader = DataLoader(balanced, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                        drop_last=True, pin_memory=env.device.type == "cuda")
    steps_per_epoch = max(1, int(counts.sum()) // (cfg.batch_size * env.world_size))

    seed_everything(cfg.seed)
    model = place(build_model(cfg, num_classes), env, cfg.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    scheduler = warmup_cosine(optimizer, cfg.epochs * steps_per_epoch,
                              cfg.warmup_epochs * steps_per_epoch)
    modules = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    start_epoch, step, checkpoint = resume(out, modules, reporter, env)
    reporter.plan(cfg.epochs, steps_per_epoch, cfg.batch_size * env.world_size, start_step=step)
    first_step = step + 1
    evaluation = None

    drawn = np.zeros(num_classes, dtype=np.int64)
    batches = cycle(loader, balanced, start_epoch)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        for _ in range(steps_per_epoch):
            images, labels = next(batches)
            drawn += np.bincount(labels.numpy(), minlength=num_classes)
            images, labels = to_device(images, env, cfg.channels_last), labels.to(env.device)
            with autocast(env, cfg.amp):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
            optimizer_step(loss, optimizer, scheduler)
            step += 1
            if step == first_step:
                reporter.images("train", step, images)
            reporter.metric(step, epoch + 1, loss=env.mean(loss.item()),
                            lr=scheduler.get_last_lr()[0])
        evaluation = predicted, labels = evaluate(model, eval_streams, cfg, env)
        scores = class_accuracy(predicted, labels)
        reporter.evaluation(step, epoch + 1, accuracy=scores.accuracy,
                            mean_class_accuracy=scores.mean_class_accuracy,
                            majority_class_accuracy=majority_baseline(counts, labels).accuracy)
        checkpoint = save_epoch(out, epoch + 1, step, modules, reporter, env,
                                extra={"model": cfg.model, "image_size": cfg.image_size,
                                       "num_classes": num_classes})

    if evaluation is None:                   # resumed after the last epoch: score what was saved
        evaluation = evaluate(model, eval_streams, cfg, env)
    predicted, labels = evaluation
    scores, majority = class_accuracy(predicted, labels), majority_baseline(counts, labels)
    curves = write_curves(out, reporter, env,
                          {"cross-entropy": ["loss"],
                           "eval accuracy": ["accuracy", "mean_class_accuracy",
                                             "majority_class_accuracy"]},
                          f"classification, {cfg.model}")
    drawn_total = env.gather_cat(torch.from_numpy(drawn)[None].to(env.device)).sum(0).cpu()
    summary = {
        **accuracy_summary(scores, majority, names),
        "class_weights": named(balanced.class_weights, names),
        "drawn_class_share": named({c: float(v) / max(1, int(drawn_total.sum()))
                                    for c, v in enumerate(drawn_total.tolist()) if counts[c]},
                                   names),
        "checkpoint": str(checkpoint),
        "curves_png": str(curves),
        "epochs": cfg.epochs,
        "model": cfg.model,
        **({"confusion_png": str(confusion_picture(
            predicted, labels, names, out / "confusion.png",
            f"{cfg.model} on {', '.join(cfg.eval_splits)}: mean class accuracy "
            f"{scores.mean_class_accuracy:.2f}"))} if env.is_main else {}),
        "eval_splits": ",".join(cfg.eval_splits),
        "eval_records": scores.samples,
        "train_records": int(counts.sum()),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if "confusion_png" in summary:
        reporter.artifact("confusion_png", summary["confusion_png"])
    return summary


def accuracy_summary(scores: ClassAccuracy, majority: ClassAccuracy,
                     names: dict[int, str]) -> dict[str, Any]:
    return {
        "accuracy": scores.accuracy,
        "mean_class_accuracy": scores.mean_class_accuracy,
        "majority_class_accuracy": majority.accuracy,
        "majority_mean_class_accuracy": majority.mean_class_accuracy,
        "mean_class_accuracy_chance_stderr": scores.chance_stderr,
        "per_class_accuracy": named(scores.per_class, names),
    }
