"""Benchmark: images/s per DataLoader worker of the face training input path, in one run.

Inputs (cached under /tmp/imageds-bench/): 112x112 face JPEGs drawn by demo.sample_data
(generate_faces at 112 px, 260 identities x 8, the 6 files it spoils on purpose left out), packed
once per run into a temporary insightface .rec (write_insightface_legacy), an HDF5 image store
and TFRecord shards of the same images. Every path reads the same records, one process, no
DataLoader workers (num_workers=0), so its rate is the rate of one worker:

- decode ceiling:  read the record's image bytes through the .idx and decode them to an RGB PIL
                   image; nothing else. No pipeline can be faster than this.
- seed 002:        a faithful per-sample version of seed 002's AugmentRecordDataset: read the
                   record, unpack its IRHeader, decode to PIL, seed 002's Augmenter (crop,
                   photometric, low resolution; PIL and torchvision per image), then its
                   transform: flip lambda, MedicalMaskOcclusion (the picture loaded once,
                   resized, rotated (expand) and pasted per call, the binary mask made from its
                   alpha), ToTensorWithMask (to_tensor, mask / 255), Normalize on the image.
- ours:            ml.datasets.RecordIODataset + ml.augmenter.Augmenter +
                   ml.transforms.face_train_transform(uint8_output=True), batches collated by
                   ml.collate.Uint8Collate: uint8 images and masks, which the consumer
                   normalises on its device with BatchNormalizer, as ml/train/face.py does (the
                   same values as the default path; on a GPU a few microseconds per batch).
- ours (float batches): the same, collated by NormalizeCollate: float32 batches normalised in
                   the worker, for consumers that want float batches from the DataLoader.
- ours (float items): the default face_train_transform (float items, default collate).
- ours (h5):       the `ours` pipeline through ml.datasets.H5StoreDataset (uint8 batches).
- ours (tfrecord): the `ours` pipeline through ml.datasets.TFRecordStream (CRC checked, uint8
                   batches).

Augmentation settings, identical on every path: seed 002's "standard training" probabilities
(crop 0.1, photometric 0.3, low resolution 0.2), mask 0.5, flip 0.5. Every path but the ceiling
is iterated through torch's DataLoader(batch_size=BATCH, num_workers=0), so the rates include
batching; every batch holds float32 normalised images and float masks, except ours, ours (h5)
and ours (tfrecord), whose batches are uint8 for the device to normalise. The paths run in turn,
their order reversed every round; each path's figure is its best round, by wall clock (images/s)
and by this process's CPU time (what a worker with a core of its own would do).

Run from the repo root: .venv/bin/python bench/loader.py
The last line printed is one JSON object with the figures the issue names.
"""

from __future__ import annotations

import io
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.sample_data import generate_faces  # noqa: E402
from ml.augmenter import Augmenter  # noqa: E402
from ml.collate import NormalizeCollate, Uint8Collate  # noqa: E402
from ml.datasets import H5StoreDataset, RecordIODataset, TFRecordStream  # noqa: E402
from ml.datasets.pipeline import decode_bytes  # noqa: E402
from ml.formats.example_proto import make_image_example  # noqa: E402
from ml.formats.h5_store import H5Item, write_h5_store  # noqa: E402
from ml.formats.insightface_rec import open_face_rec, write_insightface_legacy  # noqa: E402
from ml.formats.recordio import RecordIOReader, unpack_header  # noqa: E402
from ml.formats.tfrecord import write_shards  # noqa: E402
from ml.transforms import (CASIA_REFERENCE_POINTS, face_train_transform,  # noqa: E402
                           load_mask_picture)

FACES_DIR = Path("/tmp/imageds-bench/loader_faces_112")
N_IDENTITIES, PER_IDENTITY, SIDE = 260, 8, 112
CROP_PROB, PHOTOMETRIC_PROB, LOW_RES_PROB = 0.1, 0.3, 0.2   # seed 002's standard training
MASK_PROB, FLIP_PROB = 0.5, 0.5
MEAN = STD = (0.5, 0.5, 0.5)
BATCH = 64
ROUNDS = 6
TARGET_IPS, TARGET_RATIO = 2000, 2.0


# ------------------------------------------------------------------------------------ inputs

def face_files() -> list[tuple[Path, int]]:
    """(path, identity) of every readable 112x112 face JPEG, generated once and cached."""
    marker = FACES_DIR / ".complete"
    if not marker.exists():
        generate_faces(FACES_DIR, n_identities=N_IDENTITIES, per_identity=PER_IDENTITY,
                       size=SIDE, seed=0)
        marker.touch()
    planted = json.loads((FACES_DIR / "PLANTED.json").read_text())
    spoiled = set(planted["missing"]) | set(planted["corrupt"])
    return [(FACES_DIR / "images" / f"id_{i:04d}" / f"{k:02d}.jpg", i)
            for i in range(N_IDENTITIES) for k in range(PER_IDENTITY)
            if f"id_{i:04d}/{k:02d}" not in spoiled]


def pack_inputs(files: list[tuple[Path, int]], work: Path) -> tuple[Path, Path, Path]:
    """The same images as an insightface .rec, an HDF5 store and TFRecord shards."""
    rec_dir = work / "rec"
    write_insightface_legacy(rec_dir, [(str(p), label) for p, label in files], sha256=False)
    h5_path = work / "faces.h5"
    write_h5_store(h5_path, (H5Item(f"id_{label:04d}", p.stem, 0, p.read_bytes())
                             for p, label in files), total=len(files))
    shard_dir = work / "tfrecords"
    write_shards(files, lambda item: make_image_example(item[0].read_bytes(), label=item[1],
                                                        height=SIDE, width=SIDE),
                 shard_dir, "train", 4 << 20, seed=0)
    return rec_dir, h5_path, shard_dir


# ----------------------------------------------------------------------- seed 002's pipeline

class Seed002Augmenter:
    """Seed 002's Augmenter as its description gives it: crop, photometric, low resolution."""

    def __init__(self, crop_prob: float, photometric_prob: float, low_res_prob: float):
        self.crop_prob, self.photometric_prob = crop_prob, photometric_prob
        self.low_res_prob = low_res_prob
        self.photometric = T.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0)

    def augment(self, img: Image.Image) -> Image.Image:
        if random.random() < self.crop_prob:
            img = self.random_crop(img)
        if random.random() < self.photometric_prob:
            img = self.photometric(img)
        if random.random() < self.low_res_prob:
            img = self.low_resolution(img)
        return img

    def random_crop(self, img: Image.Image) -> Image.Image:
        scale = random.uniform(0.8, 1.0)
        side = int(img.size[0] * scale)
        x0 = random.randint(0, img.size[0] - side)
        y0 = random.randint(0, img.size[1] - side)
        return img.crop((x0, y0, x0 + side, y0 + side)).resize((SIDE, SIDE), Image.BILINEAR)

    def low_resolution(self, img: Image.Image) -> Image.Image:
        small = int(img.size[0] * random.uniform(0.25, 0.75))
        img = img.resize((small, small), Image.BILINEAR)
        return img.resize((SIDE, SIDE), Image.BILINEAR)


class Seed002MedicalMaskOcclusion:
    """Seed 002's MedicalMaskOcclusion, step by step as its description lists them."""

    def __init__(self, prob: float = 0.5, ref_points=CASIA_REFERENCE_POINTS):
        self.prob = prob
        self.ref_points = [np.asarray(p, dtype=np.float64) for p in ref_points]
        self.mask_img = load_mask_picture(None).copy()      # loaded once, as seed 002 does
        self.vertical_offset = 25

    @staticmethod
    def randomize_point(point: np.ndarray, max_offset: float) -> np.ndarray:
        return point + np.array([random.uniform(-max_offset, max_offset),
                                 random.uniform(-max_offset, max_offset)])

    def __call__(self, img: Image.Image) -> tuple[Image.Image, Image.Image]:
        if random.random() > self.prob:
            return img, Image.new("L", img.size, 255)
        nose = self.randomize_point(self.ref_points[0], 3)
        left_mouth = self.randomize_point(self.ref_points[1], 3)
        right_mouth = self.randomize_point(self.ref_points[2], 3)
        shift_x, shift_y = random.uniform(-5, 5), random.uniform(-5, 5)
        scale = random.uniform(0.95, 1.10)
        angle = random.uniform(-7, 7)
        mouth_width = np.linalg.norm(right_mouth - left_mouth)
        mask_width = int(mouth_width * 4.0 * scale)
        mask_height = int((right_mouth[1] - nose[1]) * 4.0 * scale)
        mask = self.mask_img.resize((mask_width, mask_height))
        mask = mask.rotate(angle, expand=True)
        center_x = int(nose[0] + shift_x)
        paste_y = int(nose[1] - self.vertical_offset + shift_y)
        paste_x = center_x - mask.width // 2
        img = img.copy()
        img.paste(mask, (paste_x, paste_y), mask)
        binary_mask = Image.new("L", img.size, 255)
        occluding = mask.getchannel("A").point(lambda a: 255 if a > 0 else 0)
        binary_mask.paste(0, (paste_x, paste_y), occluding)
        return img, binary_mask


class Seed002ToTensorWithMask:
    def __call__(self, data):
        img, mask = data
        mask_tensor = torch.from_numpy(np.array(mask)).float().unsqueeze(0) / 255.0
        return F.to_tensor(img), mask_tensor


def seed002_transform() -> T.Compose:
    normalize = T.Normalize(mean=list(MEAN), std=list(STD))
    return T.Compose([
        lambda img: img.transpose(Image.FLIP_LEFT_RIGHT) if random.random() > FLIP_PROB else img,
        Seed002MedicalMaskOcclusion(prob=MASK_PROB),
        Seed002ToTensorWithMask(),
        lambda x: (normalize(x[0]), x[1]),
    ])


class Seed002RecordDataset(Dataset):
    """Seed 002's AugmentRecordDataset: read_sample (read, unpack, decode to PIL), augment,
    transform, (image, label, mask)."""

    def __init__(self, rec_dir: Path):
        index = open_face_rec(rec_dir)
        self.imgidx = index.image_keys.tolist()
        index.close()
        self.record = RecordIOReader(rec_dir / "train.rec", rec_dir / "train.idx")
        self.augmenter = Seed002Augmenter(CROP_PROB, PHOTOMETRIC_PROB, LOW_RES_PROB)
        self.transform = seed002_transform()

    def __len__(self) -> int:
        return len(self.imgidx)

    def read_sample(self, index: int) -> tuple[Image.Image, torch.Tensor]:
        s = self.record.read(self.imgidx[index])
        header, img = unpack_header(s)
        label = header.label
        if not isinstance(label, (int, float)):
            label = label[0]
        sample = Image.open(io.BytesIO(img)).convert("RGB")
        return sample, torch.tensor(label, dtype=torch.long)

    def __getitem__(self, index: int):
        sample, target = self.read_sample(index)
        sample = self.augmenter.augment(sample)
        result = self.transform(sample)
        return result[0], target, result[1]


# ------------------------------------------------------------------------------------ paths

def ours_augmenter() -> Augmenter:
    return Augmenter(CROP_PROB, PHOTOMETRIC_PROB, LOW_RES_PROB)


def ours_transform(uint8_output: bool = True):
    return face_train_transform(mask_prob=MASK_PROB, flip_prob=FLIP_PROB, mean=MEAN, std=STD,
                                uint8_output=uint8_output)


def drain(loader: Any) -> int:
    """Iterate a DataLoader to the end; the number of images it gave."""
    return sum(len(batch[0]) for batch in loader)


def decode_ceiling(rec_dir: Path) -> Callable[[], int]:
    index = open_face_rec(rec_dir)
    keys = index.image_keys.tolist()

    def run() -> int:
        for key in keys:
            decode_bytes(index.read_image(key), "bench")
        return len(keys)
    return run


def through_loader(dataset: Dataset, shuffle: bool = True,
                   collate_fn: Callable | None = None) -> Callable[[], int]:
    def run() -> int:
        return drain(DataLoader(dataset, batch_size=BATCH, shuffle=shuffle, num_workers=0,
                                collate_fn=collate_fn))
    return run


def paths(rec_dir: Path, h5_path: Path, shard_dir: Path) -> dict[str, Callable[[], int]]:
    collate, normalize_collate = Uint8Collate(), NormalizeCollate(MEAN, STD)
    return {
        "decode_ceiling": decode_ceiling(rec_dir),
        "seed002": through_loader(Seed002RecordDataset(rec_dir)),
        "ours": through_loader(RecordIODataset(rec_dir, ours_transform(),
                                               augmenter=ours_augmenter()), collate_fn=collate),
        "ours_float_batches": through_loader(RecordIODataset(rec_dir, ours_transform(),
                                                             augmenter=ours_augmenter()),
                                             collate_fn=normalize_collate),
        "ours_float_items": through_loader(RecordIODataset(rec_dir, ours_transform(False),
                                                           augmenter=ours_augmenter())),
        "ours_h5": through_loader(H5StoreDataset(h5_path, ours_transform(),
                                                 augmenter=ours_augmenter()), collate_fn=collate),
        "ours_tfrecord": through_loader(TFRecordStream(shard_dir, ours_transform(),
                                                       shuffle_buffer=256,
                                                       augmenter=ours_augmenter()),
                                        shuffle=False, collate_fn=collate),
    }


def main() -> None:
    torch.set_num_threads(1)
    random.seed(0)
    torch.manual_seed(0)
    bench_start = time.perf_counter()
    files = face_files()
    with tempfile.TemporaryDirectory(prefix="loader-bench-", dir=FACES_DIR.parent) as tmp:
        runs = paths(*pack_inputs(files, Path(tmp)))
        names = list(runs)
        best = {name: math.inf for name in names}
        best_cpu = {name: math.inf for name in names}
        for round_number in range(ROUNDS):
            for name in names if round_number % 2 == 0 else names[::-1]:
                start, cpu = time.perf_counter(), time.process_time()
                count = runs[name]()
                elapsed = time.perf_counter() - start
                if count != len(files):
                    raise SystemExit(f"{name} gave {count} images, expected {len(files)}")
                best[name] = min(best[name], elapsed)
                best_cpu[name] = min(best_cpu[name], time.process_time() - cpu)
    rates = {name: len(files) / best[name] for name in names}
    cpu_rates = {name: len(files) / best_cpu[name] for name in names}
    print(f"{len(files)} face JPEGs of {SIDE}x{SIDE}; one process (num_workers=0), batches of "
          f"{BATCH}; best of {ROUNDS} rounds")
    print(f"augmentation: crop {CROP_PROB}, photometric {PHOTOMETRIC_PROB}, low resolution "
          f"{LOW_RES_PROB}, mask {MASK_PROB}, flip {FLIP_PROB}")
    print(f"  {'path':17s} {'images/s':>9s} {'us/image':>9s}   {'CPU us/image':>12s} "
          f"{'images per CPU-s':>16s}")
    for name in names:
        print(f"  {name:17s} {rates[name]:9.0f} {1e6 / rates[name]:9.0f}   "
              f"{1e6 / cpu_rates[name]:12.0f} {cpu_rates[name]:16.0f}")
    ratio = rates["ours"] / rates["seed002"]
    print(f"targets: ours >= {TARGET_RATIO}x seed 002 ({ratio:.2f}x) and >= {TARGET_IPS} "
          f"images/s per worker ({rates['ours']:.0f}). The CPU columns count this process's "
          "CPU time only: what a worker with a core of its own would do on a loaded machine")
    print(f"bench wall time {time.perf_counter() - bench_start:.0f} s")
    print(json.dumps({
        "ours_ips_per_worker": round(rates["ours"]),
        "baseline_ips_per_worker": round(rates["seed002"]),
        "decode_ceiling_ips": round(rates["decode_ceiling"]),
        "ratio_vs_baseline": round(ratio, 3),
        "float_batches_ips": round(rates["ours_float_batches"]),
        "float_batches_ratio_vs_baseline": round(rates["ours_float_batches"] / rates["seed002"], 3),
        "float_items_ips": round(rates["ours_float_items"]),
        "h5_ips": round(rates["ours_h5"]),
        "tfrecord_ips": round(rates["ours_tfrecord"]),
        "ours_ips_per_cpu_s": round(cpu_rates["ours"]),
        "baseline_ips_per_cpu_s": round(cpu_rates["seed002"]),
        "ratio_vs_baseline_cpu": round(cpu_rates["ours"] / cpu_rates["seed002"], 3),
    }))


if __name__ == "__main__":
    main()
