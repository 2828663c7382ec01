"""Quality-degrading augmentations for face training (seed 002's Augmenter).

Three independent coin flips, in seed 002's order: a random crop resized back to the input size,
photometric jitter (brightness, contrast, saturation with torchvision ColorJitter's ranges and
functional ops, in a random order), and a low-resolution round trip (down-sample by 0.25..0.75
with a random filter, up-sample back with another). Works on PIL images of any size: every path
returns an image of the input's size (seed 002 hard-coded 112x112 on the way back up).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

from ml.transforms import WorkerRandom, check_pil, check_probability

CROP_SIDE_RANGE = (0.8, 1.0)           # crop side as a fraction of the image side
LOW_RES_SIDE_RANGE = (0.25, 0.75)      # down-sampled side as a fraction of the image side
PHOTOMETRIC_STRENGTH = 0.5             # ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5)
RESAMPLING_FILTERS = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BOX,
                      Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


def adjust_contrast(image: Image.Image, factor: float) -> Image.Image:
    """torchvision's adjust_contrast of an RGB PIL image (Pillow's ImageEnhance.Contrast: a blend
    with a grey image of the rounded mean luminance), pixel for pixel, with the mean taken by
    numpy instead of ImageStat's per-bin Python loops (about a third less time at 112x112)."""
    if image.mode != "RGB":
        return F.adjust_contrast(image, factor)
    mean = int(np.asarray(image.convert("L")).mean() + 0.5)
    return Image.blend(Image.new("RGB", image.size, (mean, mean, mean)), image, factor)


class Augmenter:
    """Random crop, photometric jitter and low-resolution simulation, each with its own probability.

    `augment(image)` (or calling the object) returns a new PIL image of the same size; with all
    probabilities 0 it returns the image unchanged. seed=None draws from Python's `random` (seeded
    per DataLoader worker); an integer seed makes the sequence of augmentations reproducible (see
    ml.transforms.WorkerRandom).
    """

    def __init__(self, crop_augmentation_prob: float = 0.0, photometric_augmentation_prob: float = 0.0,
                 low_res_augmentation_prob: float = 0.0, seed: int | None = None):
        who = "Augmenter"
        self.crop_augmentation_prob = check_probability(crop_augmentation_prob,
                                                        "crop_augmentation_prob", who)
        self.photometric_augmentation_prob = check_probability(photometric_augmentation_prob,
                                                               "photometric_augmentation_prob", who)
        self.low_res_augmentation_prob = check_probability(low_res_augmentation_prob,
                                                           "low_res_augmentation_prob", who)
        self.photometric = T.ColorJitter(brightness=PHOTOMETRIC_STRENGTH, contrast=PHOTOMETRIC_STRENGTH,
                                         saturation=PHOTOMETRIC_STRENGTH, hue=0)
        self.random = WorkerRandom(seed)

    def __call__(self, image: Image.Image) -> Image.Image:
        return self.augment(image)

    def augment(self, image: Image.Image) -> Image.Image:
        """Apply each augmentation with its probability (crop, photometric, low resolution)."""
        image = check_pil(image, "Augmenter")
        rng = self.random.get()
        if rng.random() < self.crop_augmentation_prob:
            image = self.random_crop(image, rng)
        if rng.random() < self.photometric_augmentation_prob:
            image = self.photometric_augment(image, rng)
        if rng.random() < self.low_res_augmentation_prob:
            image = self.low_resolution(image, rng)
        return image

    def random_crop(self, image: Image.Image, rng: Any) -> Image.Image:
        """Crop 80..100 % of each side (at least one pixel less) at a random place, resize back."""
        width, height = image.size
        if min(width, height) < 2:
            return image
        side = rng.uniform(*CROP_SIDE_RANGE)
        crop_w = min(width - 1, max(1, round(width * side)))
        crop_h = min(height - 1, max(1, round(height * side)))
        top, left = rng.randint(0, height - crop_h), rng.randint(0, width - crop_w)
        return F.resized_crop(image, top, left, crop_h, crop_w, [height, width],
                              F.InterpolationMode.BILINEAR, antialias=True)

    def photometric_augment(self, image: Image.Image, rng: Any) -> Image.Image:
        """Brightness, contrast and saturation factors from ColorJitter's ranges, random order."""
        adjustments = [(F.adjust_brightness, self.photometric.brightness),
                       (adjust_contrast, self.photometric.contrast),
                       (F.adjust_saturation, self.photometric.saturation)]
        for adjust, (low, high) in rng.sample(adjustments, len(adjustments)):
            image = adjust(image, rng.uniform(low, high))
        return image

    def low_resolution(self, image: Image.Image, rng: Any) -> Image.Image:
        """Down-sample both sides by one factor in 0.25..0.75, then up-sample to the input size."""
        width, height = image.size
        side = rng.uniform(*LOW_RES_SIDE_RANGE)
        small = (max(1, round(width * side)), max(1, round(height * side)))
        down, up = rng.choice(RESAMPLING_FILTERS), rng.choice(RESAMPLING_FILTERS)
        return image.resize(small, down).resize((width, height), up)
