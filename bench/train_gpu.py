"""Benchmark: face-training throughput (images/s) with the real RecordIO loader against synthetic
in-memory batches, in one run (issue 6 item 7).

The model and step are the face trainer's own (ml.train.face.build_training / train_step):
iResNet-50 at 112x112 with the occlusion head, ArcFace margin head + batch-hard triplet +
occlusion loss, SGD; bf16 autocast and channels_last on CUDA (float32 on the CPU). Two phases,
each `--warmup` untimed steps then `--steps` timed ones:

- synthetic: one batch of random images, labels and masks made once on the device and reused,
  so the rate is the model's alone (no input pipeline);
- real loader: ml.datasets.RecordIODataset with the face train transform (JPEG decode,
  surgical-mask occlusion with its mask, flip; uint8 batches normalised on the device, as
  ml/train/face.py trains) in a DataLoader with `--workers`
  worker processes, pinned memory and P x K batches from ml.samplers.RandomIdentitySampler
  (epochs chained, so no worker restarts between epochs), copied to the device non-blocking.

ratio = real_loader_ips / synthetic_ips: 1.0 means the input pipeline keeps the GPU fed.

Input: `--rec HANDLE.json` (a RecordIOHandle, e.g. outputs/faces/recordio.handle.json), or by
default a .rec of `--images` (>= 5,000) generated sample faces built in a temporary folder
(demo.face_inputs). On a CPU it runs too, slowly; use tiny settings to check it works:

    .venv/bin/python bench/train_gpu.py --steps 3 --warmup 1 --batch 8 --images 400 --workers 1

The last line printed is one JSON object: device, real_loader_ips, synthetic_ips, ratio (and
the settings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.face_inputs import build_face_inputs  # noqa: E402
from ml.collate import Uint8Collate  # noqa: E402
from ml.datasets.recordio import RecordIODataset  # noqa: E402
from ml.formats.handles import RecordIOHandle  # noqa: E402
from ml.items import MaskedItem  # noqa: E402
from ml.samplers import RandomIdentitySampler  # noqa: E402
from ml.train.ddp import DistEnv  # noqa: E402
from ml.train.face import Config, batch_to_device, build_training, train_step  # noqa: E402
from ml.train.inputs import input_handle  # noqa: E402
from ml.transforms import face_train_transform  # noqa: E402

PER_IDENTITY = 8


class ChainedEpochs(Sampler[int]):
    """`epochs` epochs of a RandomIdentitySampler in one iteration (set_epoch between them), so
    one DataLoader iterator streams them without draining and restarting its workers."""

    def __init__(self, sampler: RandomIdentitySampler, epochs: int):
        self.sampler, self.epochs = sampler, epochs

    def __len__(self) -> int:
        return len(self.sampler) * self.epochs

    def __iter__(self) -> Iterator[int]:
        for epoch in range(self.epochs):
            self.sampler.set_epoch(epoch)
            yield from iter(self.sampler)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(batches: Iterator, step, warmup: int, steps: int, device: torch.device) -> float:
    """Images/s over `steps` steps after `warmup` untimed ones; `step(batch)` returns its size."""
    for _ in range(warmup):
        step(next(batches))
    synchronize(device)
    started, images = time.perf_counter(), 0
    for _ in range(steps):
        images += step(next(batches))
    synchronize(device)
    return images / (time.perf_counter() - started)


def recordio_handle(args: argparse.Namespace, work: Path) -> RecordIOHandle:
    if args.rec:
        return input_handle({"recordio": args.rec}, "recordio", RecordIOHandle)
    identities = -(-args.images // PER_IDENTITY)
    print(f"building a .rec of {identities} x {PER_IDENTITY} generated faces in {work} ...",
          flush=True)
    started = time.perf_counter()
    inputs = build_face_inputs(work, n_identities=identities, per_identity=PER_IDENTITY,
                               n_pairs=20, workers=os.cpu_count())
    print(f"built {inputs.recordio.num_images} train images of {inputs.recordio.num_classes} "
          f"identities in {time.perf_counter() - started:.1f} s", flush=True)
    return inputs.recordio


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rec", help="a RecordIOHandle JSON; default: build one of --images faces")
    p.add_argument("--images", type=int, default=6400, help="faces to generate when no --rec")
    p.add_argument("--backbone", default="iresnet50")
    p.add_argument("--batch", type=int, default=512, help="images per step (P x K, K=4)")
    p.add_argument("--steps", type=int, default=60, help="timed steps per phase")
    p.add_argument("--warmup", type=int, default=15, help="untimed steps per phase")
    p.add_argument("--workers", type=int, default=min(14, max(1, (os.cpu_count() or 2) - 2)))
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    args = p.parse_args(argv)

    env = DistEnv.from_environment(args.device)
    device = env.device
    torch.backends.cudnn.benchmark = device.type == "cuda"
    cfg = Config(backbone=args.backbone, embedding_size=512, batch_size=args.batch,
                 optimizer="sgd", lr=0.1, weight_decay=5e-4, scale=64.0, margin=0.5,
                 amp=not args.fp32, channels_last=True, device=args.device)
    with tempfile.TemporaryDirectory(prefix="train-gpu-bench-") as tmp:
        rec = recordio_handle(args, Path(tmp))
        dataset = RecordIODataset(rec, face_train_transform(uint8_output=True))  # as trained
        net, ddp, optimizer = build_training(cfg, dataset.num_classes, 112, env)
        net.train()

        def step(batch) -> int:
            images, labels, masks = batch_to_device(batch, env, cfg.channels_last)
            train_step(ddp, optimizer, None, images, labels, masks, env, cfg.amp)
            return len(labels)

        n = args.batch
        fixed = MaskedItem(torch.randn(n, 3, 112, 112),
                           torch.randint(0, dataset.num_classes, (n,)), torch.ones(n, 1, 112, 112))
        fixed = batch_to_device(fixed, env, cfg.channels_last)

        def synthetic_batches():
            while True:
                yield fixed

        def synthetic_step(batch) -> int:
            train_step(ddp, optimizer, None, *batch, env, cfg.amp)
            return n

        synthetic_ips = timed_steps(synthetic_batches(), synthetic_step, args.warmup, args.steps,
                                    device)
        print(f"synthetic batches: {synthetic_ips:.1f} images/s", flush=True)

        sampler = RandomIdentitySampler(dataset.labels, cfg.num_instances, args.batch, seed=0)
        epochs = -(-(args.warmup + args.steps) // sampler.batches_per_epoch) + 1
        loader = DataLoader(dataset, batch_size=args.batch, sampler=ChainedEpochs(sampler, epochs),
                            num_workers=args.workers, pin_memory=device.type == "cuda",
                            drop_last=True, persistent_workers=args.workers > 0,
                            collate_fn=Uint8Collate(),
                            prefetch_factor=4 if args.workers > 0 else None)
        real_ips = timed_steps(iter(loader), step, args.warmup, args.steps, device)
        print(f"real RecordIO loader ({args.workers} workers): {real_ips:.1f} images/s", flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    figures = {"device": name, "real_loader_ips": round(real_ips, 1),
               "synthetic_ips": round(synthetic_ips, 1), "ratio": round(real_ips / synthetic_ips, 3),
               "backbone": args.backbone, "batch": args.batch, "steps": args.steps,
               "workers": args.workers, "bf16": device.type == "cuda" and not args.fp32,
               "train_images": len(dataset)}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
