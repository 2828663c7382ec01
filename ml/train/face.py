"""Face recognition training (seed 002): an iResNet with a margin head over P x K identity batches,
evaluated with the insightface / AdaFace 10-fold verification protocol.

Inputs: `recordio` (RecordIOHandle: the train split packed in insightface's layout) and
`validation` (MemfileHandle: verification pairs of held-out identities, one or more named sets).

Each step draws a P x K batch (ml.samplers.RandomIdentitySampler, split across DDP ranks) from
RecordIODataset with the face train transform (surgical-mask occlusion with its mask, flip of
image and mask together, normalisation), and minimises

    margin loss (ArcFace or AdaFace cross-entropy)
    + triplet_weight * batch-hard triplet loss over the P x K batch
    + occlusion_weight * BCE of the occlusion head against the transform's mask.

AdamW or SGD, linear warmup then cosine decay per step; bf16 autocast and channels_last on CUDA
(float32 on CPU). After every `eval_every` epochs (and the last) every rank embeds its share of
the validation pairs, the distances are gathered and each set is scored
(ml.eval.face_verification); the raw-pixel baseline is scored once per run with the same protocol. A checkpoint (model,
margin head, optimizer, scheduler, the metric history) is written after every epoch, and a run
resumes from the newest one in `out/checkpoints`. Randomness is re-seeded per (seed, epoch,
rank), so a resumed run draws the same batches and augmentations as an uninterrupted one.

Writes out/checkpoints/epoch_NNNN.pt and out/curves.png (loss and accuracy over the training
steps); returns the summary (val_accuracy, per-set accuracies, raw_pixel_accuracy,
margin_over_raw, checkpoint, curves_png, ...), which ml.train.cli writes to out/summary.json.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ml.augmenter import Augmenter
from ml.collate import FACE_NORMALIZER, Uint8Collate
from ml.datasets.recordio import RecordIODataset
from ml.datasets.validation_memfile import ValidationMemfileDataset
from ml.errors import ConfigError
from ml.eval.face_verification import (evaluate_sets, memfile_pair_distances,
                                       pixel_embedding, summary_figures, validation_sets)
from ml.eval.pictures import verification_picture
from ml.formats.handles import MemfileHandle
from ml.items import Item, MaskedItem, mask_of
from ml.losses import batch_hard_triplet_loss, occlusion_loss
from ml.models.face_model import FaceModel, build_face_model
from ml.models.heads import MARGIN_HEADS, MarginHead, build_margin_head
from ml.options import Bool, Int, Text
from ml.samplers import RandomIdentitySampler
from ml.train.config import BatchSize, Count, Epochs, Fraction, Optimizer, Rate, TaskOptions, Workers
from ml.train.ddp import DistEnv
from ml.train.loop import (autocast, evaluating, optimizer_step, place, resume, save_epoch,
                           seed_everything, to_device, write_curves)
from ml.train.report import Reporter
from ml.train.schedule import build_optimizer, warmup_cosine
from ml.train.tasks import TASKS
from ml.transforms import face_train_transform


CURVE_PANELS = {
    "training loss": ["loss", "margin_loss", "triplet_loss", "occlusion_loss", "epoch_loss"],
    "verification accuracy (10-fold)": ["val_accuracy", "raw_pixel_accuracy"],
}


class Config(TaskOptions):
    """Face training options; the defaults are the CPU demo (config/train.yaml `face:`)."""

    # model
    backbone: Text = Field("iresnet_small", description="ml.models.iresnet.IRESNET_PRESETS: iresnet50, ...")
    embedding_size: Int = Field(128, description="Length of the face embedding")
    dropout: Rate = Field(0.0, description="Dropout before the embedding layer")
    mask_features: Bool = Field(False, description="weight the feature map by the predicted visibility")
    # losses
    head: Literal[MARGIN_HEADS] = Field("arcface", description="the margin head: arcface or adaface")
    scale: Rate = Field(16.0, description="Margin head's logit scale s")
    margin: Rate = Field(0.3, description="Margin head's angular margin m")
    adaface_h: Rate = Field(0.333, description="AdaFace: how strongly image quality moves the margin (h)")
    adaface_t_alpha: Rate = Field(0.01, description="AdaFace: momentum of the feature-norm statistics")
    triplet_weight: Rate = Field(1.0, description="0 turns the batch-hard triplet loss off")
    triplet_margin: Rate = Field(0.3, description="Margin of the batch-hard triplet loss")
    occlusion_weight: Rate = Field(0.2, description="0 removes the occlusion head")
    # data (batch_size is per process: P x K with K = num_instances)
    batch_size: BatchSize = Field(32)
    num_instances: Annotated[Int, Field(ge=1)] = Field(4, description="images per identity in a batch (K)")
    mask_prob: Fraction = Field(0.5, description="Probability of the synthetic medical-mask occlusion")
    flip_prob: Fraction = Field(0.5, description="Probability of the horizontal flip")
    crop_prob: Fraction = Field(0.0, description="seed 002's Augmenter: random crop,")
    photometric_prob: Fraction = Field(0.0, description="brightness / contrast / saturation jitter,")
    low_res_prob: Fraction = Field(0.0, description="low-resolution round trip (0 = off)")
    num_workers: Workers = Field(1)
    # optimisation
    epochs: Epochs = Field(12)
    max_steps_per_epoch: Count = Field(0, description="0 = the sampler's full epoch")
    optimizer: Optimizer = Field("adamw")
    lr: Rate = Field(2e-3, description="Peak learning rate, reached after the warmup; then a cosine decay")
    weight_decay: Rate = Field(5e-4, description="Weight decay of the optimizer")
    momentum: Rate = Field(0.9, description="SGD momentum (Nesterov)")
    warmup_epochs: Rate = Field(2.0, description="Epochs of linear learning-rate warmup")
    min_lr_ratio: Rate = Field(0.01, description="The cosine decay ends at this fraction of lr")
    # evaluation
    eval_every: Count = Field(4, description="epochs between evaluations; 0 = the last epoch only")
    eval_batch_pairs: Int = Field(64, description="Verification pairs per evaluation batch")
    # runtime
    threads: Count = Field(0, description="torch CPU threads per process; 0 = torch's default")
    log_every: Int = Field(10, description="steps between loss metrics")

    @model_validator(mode="after")
    def _whole_identities_per_batch(self) -> "Config":
        if self.batch_size % self.num_instances:
            raise ValueError(f"batch_size={self.batch_size} is not a multiple of num_instances="
                             f"{self.num_instances} (a batch is P identities x K images)")
        return self



class FaceTraining(nn.Module):
    """Model + margin head in one module (what DDP wraps): forward returns the losses."""

    def __init__(self, model: FaceModel, head: MarginHead, cfg: Config):
        super().__init__()
        self.model, self.head = model, head
        self.triplet_weight, self.triplet_margin = cfg.triplet_weight, cfg.triplet_margin
        self.occlusion_weight = cfg.occlusion_weight

    def forward(self, images: torch.Tensor, labels: torch.Tensor,
                masks: torch.Tensor | None) -> dict[str, torch.Tensor]:
        embeddings, occlusion_logits = self.model(images)
        losses = {"margin_loss": F.cross_entropy(self.head(embeddings, labels), labels)}
        total = losses["margin_loss"]
        if self.triplet_weight > 0:
            losses["triplet_loss"] = batch_hard_triplet_loss(embeddings, labels, self.triplet_margin)
            total = total + self.triplet_weight * losses["triplet_loss"]
        if occlusion_logits is not None:
            losses["occlusion_loss"] = occlusion_loss(occlusion_logits, masks)
            total = total + self.occlusion_weight * losses["occlusion_loss"]
        losses["loss"] = total
        return losses


def build_training(cfg: Config, num_classes: int, input_size: int, env: DistEnv
                   ) -> tuple[FaceTraining, nn.Module, torch.optim.Optimizer]:
    """The FaceTraining module on env's device, the same wrapped for DDP (itself when single
    process) and its optimizer."""
    model = build_face_model(cfg.backbone, cfg.embedding_size, cfg.dropout, input_size=input_size,
                             occlusion_head=cfg.occlusion_weight > 0,
                             mask_features=cfg.mask_features)
    head = build_margin_head(cfg.head, cfg.embedding_size, num_classes, cfg.scale, cfg.margin,
                             cfg.adaface_h, cfg.adaface_t_alpha)
    net = FaceTraining(model, head, cfg)
    ddp = place(net, env, cfg.channels_last)
    optimizer = build_optimizer([p for p in net.parameters() if p.requires_grad], cfg.optimizer,
                                cfg.lr, cfg.weight_decay, cfg.momentum)
    return net, ddp, optimizer


def batch_to_device(batch: Item | MaskedItem, env: DistEnv, channels_last: bool):
    """(images, labels, masks or None) of a RecordIODataset batch on env's device: the uint8
    images and masks the workers collate (Uint8Collate) are normalised there; float images
    (already normalised by the transform) are only laid out."""
    pixels = batch[0].to(env.device, non_blocking=True)
    layout = (torch.channels_last if channels_last and env.device.type == "cuda"
              else torch.contiguous_format)
    if pixels.dtype == torch.uint8:
        out = torch.empty(pixels.shape, dtype=torch.float32, device=env.device,
                          memory_format=layout)
        images = FACE_NORMALIZER.images(pixels, out=out)
    else:
        images = pixels.contiguous(memory_format=layout)
    labels = batch[1].to(env.device, non_blocking=True).long()
    masks = mask_of(batch)
    masks = FACE_NORMALIZER.masks(to_device(masks, env)) if masks is not None else None
    return images, labels, masks


def train_step(ddp: nn.Module, optimizer: torch.optim.Optimizer, scheduler, images: torch.Tensor,
               labels: torch.Tensor, masks: torch.Tensor | None, env: DistEnv,
               amp: bool) -> dict[str, torch.Tensor]:
    """One optimisation step of the (DDP-wrapped) FaceTraining module; the detached losses."""
    with autocast(env, amp):
        losses = ddp(images, labels, masks)
    optimizer_step(losses["loss"], optimizer, scheduler)
    return {k: v.detach() for k, v in losses.items()}


def seed_epoch(seed: int, epoch: int, rank: int) -> torch.Generator:
    """Seed python, numpy and torch for (seed, epoch, rank); return the DataLoader's generator
    (its first draw seeds the workers, whose transforms use python's `random`)."""
    key = (seed * 1_000_003 + epoch) * 1_009 + rank
    seed_everything(key)
    return torch.Generator().manual_seed(key)


class Verifier:
    """Scores a model (and the raw-pixel baseline) on the validation memfile's sets; every rank
    embeds a contiguous share of the pairs and the distances are gathered in pair order."""

    def __init__(self, handle: MemfileHandle, env: DistEnv, batch_pairs: int, amp: bool,
                 channels_last: bool):
        self.dataset = ValidationMemfileDataset(handle)
        self.pair_issame, self.sets = validation_sets(self.dataset.issame, self.dataset.dataname,
                                                      self.dataset.dataname_to_idx,
                                                      where=self.dataset.path)
        self.env, self.batch_pairs, self.amp, self.channels_last = env, batch_pairs, amp, channels_last
        self.my_pairs = np.array_split(np.arange(self.dataset.num_pairs), env.world_size)[env.rank]
        self.evaluated: dict[str, tuple[np.ndarray, dict]] = {}   # prefix -> (distances, results)

    @property
    def set_names(self) -> list[str]:
        return [s.name for s in self.sets]

    def distances(self, embed) -> np.ndarray:
        with autocast(self.env, self.amp):
            mine = memfile_pair_distances(embed, self.dataset.images, self.my_pairs,
                                          self.env.device, self.batch_pairs,
                                          lambda x: to_device(x, self.env, self.channels_last))
        return self.env.gather_cat(torch.from_numpy(mine)).numpy()

    def score(self, embed, prefix: str) -> dict[str, float]:
        dist = self.distances(embed)
        results = evaluate_sets(dist, self.pair_issame, self.sets)
        self.evaluated[prefix] = (dist, results)
        return summary_figures(results, prefix)

    def picture(self, path: Path, title: str) -> Path:
        """ROC curves (model and raw pixels) and the model's pair distances, per set, from the
        latest evaluation of each."""
        curves = {s.name: {label: (self.evaluated[prefix][1][s.name].fpr,
                                   self.evaluated[prefix][1][s.name].tpr,
                                   self.evaluated[prefix][0][s.start:s.stop])
                           for label, prefix in (("model", "val"), ("raw pixels", "raw_pixel"))
                           if prefix in self.evaluated}
                  for s in self.sets}
        issame = {s.name: self.pair_issame[s.start:s.stop] for s in self.sets}
        return verification_picture(curves, issame, path, title)

    def score_model(self, model: FaceModel) -> dict[str, float]:
        with evaluating(model, self.env) as net:
            return self.score(net.embed, "val")

    def score_raw_pixels(self) -> dict[str, float]:
        return self.score(pixel_embedding, "raw_pixel")


def train(cfg: Config, inputs: dict[str, str], out: Path, reporter: Reporter,
          env: DistEnv) -> dict[str, Any]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cuda = env.device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda           # fixed 112x112 shapes: pick the fastest kernels
    seed_epoch(cfg.seed, 0, 0)                       # every rank builds the same initial model

    rec = TASKS["face"].load(inputs, "recordio")
    verifier = Verifier(TASKS["face"].load(inputs, "validation"), env,
                        cfg.eval_batch_pairs, cfg.amp, cfg.channels_last)
    augmenter = Augmenter(cfg.crop_prob, cfg.photometric_prob, cfg.low_res_prob) \
        if max(cfg.crop_prob, cfg.photometric_prob, cfg.low_res_prob) > 0 else None
    dataset = RecordIODataset(rec, face_train_transform(cfg.mask_prob, cfg.flip_prob,
                                                        uint8_output=True),
                              augmenter=augmenter)
    sampler = RandomIdentitySampler(dataset.labels, cfg.num_instances, cfg.batch_size,
                                    seed=cfg.seed, num_replicas=env.world_size, rank=env.rank)
    steps_per_epoch = sampler.batches_per_epoch
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    num_classes = dataset.num_classes
    reporter.log(f"face: {len(dataset)} images of {num_classes} identities, "
                 f"{verifier.dataset.num_pairs} validation pairs in sets {verifier.set_names}; "
                 f"{env.world_size} process(es) on {env.device}, {steps_per_epoch} steps of "
                 f"{cfg.batch_size} per process per epoch")

    net, ddp, optimizer = build_training(cfg, num_classes, int(rec.image_size[0]), env)
    model, head = net.model, net.head
    scheduler = warmup_cosine(optimizer, cfg.epochs * steps_per_epoch,
                              round(cfg.warmup_epochs * steps_per_epoch), cfg.min_lr_ratio)
    modules = {"model": model, "head": head, "optimizer": optimizer, "scheduler": scheduler}
    start_epoch, step, checkpoint = resume(out, modules, reporter, env)
    reporter.plan(cfg.epochs, steps_per_epoch, cfg.batch_size * env.world_size, start_step=step)

    raw = verifier.score_raw_pixels()
    reporter.log(f"face: raw-pixel baseline {raw['raw_pixel_accuracy']:.4f}")
    last_eval: dict[str, float] | None = None
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        generator = seed_epoch(cfg.seed, epoch, env.rank)
        sampler.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                            num_workers=cfg.num_workers, pin_memory=cuda, drop_last=True,
                            generator=generator, collate_fn=Uint8Collate())
        net.train()
        sums: dict[str, float] = {}
        images_seen, batches, started = 0, 0, time.perf_counter()
        for batch in loader:
            if batches >= steps_per_epoch:
                break
            batches += 1
            images, labels, masks = batch_to_device(batch, env, cfg.channels_last)
            losses = train_step(ddp, optimizer, scheduler, images, labels, masks, env, cfg.amp)
            step += 1
            if batches == 1 and epoch == start_epoch + 1:
                reporter.images("train", step, images)
            images_seen += len(labels)
            values = {k: float(v) for k, v in losses.items()}
            if not math.isfinite(values["loss"]):
                raise ConfigError(f"face: the loss became {values['loss']} at step {step}; "
                                  "lower lr or scale")
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            if cfg.log_every and step % cfg.log_every == 0:
                reporter.metric(step, epoch, lr=scheduler.get_last_lr()[0], **values)
        figures = {f"epoch_{k}": env.mean(v / max(1, batches)) for k, v in sums.items()}
        figures.update(images=env.sum(images_seen), seconds=time.perf_counter() - started)
        if epoch == cfg.epochs or (cfg.eval_every and epoch % cfg.eval_every == 0):
            last_eval = verifier.score_model(model)
            figures.update(last_eval, raw_pixel_accuracy=raw["raw_pixel_accuracy"])
        reporter.evaluation(step, epoch,
                            **{k: v for k, v in figures.items() if "threshold" not in k})
        checkpoint = save_epoch(out, epoch, step, modules, reporter, env,
                                extra={"num_classes": num_classes, "config": cfg.model_dump()})

    if last_eval is None:                       # resumed after the last epoch: score what was saved
        last_eval = verifier.score_model(model)
    epochs_done = [e for e in reporter.history if "seconds" in e]
    train_seconds = sum(e["seconds"] for e in epochs_done)
    summary: dict[str, Any] = {
        **last_eval, **raw,
        "margin_over_raw": last_eval["val_accuracy"] - raw["raw_pixel_accuracy"],
        "final_loss": epochs_done[-1].get("epoch_loss", float("nan")) if epochs_done else float("nan"),
        "checkpoint": str(checkpoint),
        "epochs": cfg.epochs, "steps": step, "resumed_from_epoch": start_epoch,
        "images_per_s": sum(e["images"] for e in epochs_done) / max(train_seconds, 1e-9),
        "train_seconds": train_seconds,
        "num_classes": num_classes, "num_images": len(dataset),
        "validation_sets": ",".join(verifier.set_names),
        "backbone": cfg.backbone, "head": cfg.head, "embedding_size": cfg.embedding_size,
        "world_size": env.world_size, "device": str(env.device),
        "curves_png": str(write_curves(out, reporter, env, CURVE_PANELS,
                                       f"face verification, {cfg.backbone} + {cfg.head}")),
    }
    if env.is_main:
        summary["verification_png"] = str(verifier.picture(
            out / "verification.png", f"face verification after {step} steps"))
        reporter.artifact("verification_png", summary["verification_png"])
    reporter.log(f"face: val_accuracy {summary['val_accuracy']:.4f} (raw pixels "
                 f"{summary['raw_pixel_accuracy']:.4f}) after {step} steps")
    return summary
