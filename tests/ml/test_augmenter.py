from __future__ import annotations

import numpy as np
import pytest
import torchvision.transforms.functional as F
from PIL import Image

from ml.augmenter import Augmenter, adjust_contrast
from ml.errors import ConfigError


def photo(width: int = 150, height: int = 90) -> Image.Image:
    """A smooth colour gradient with noise: every augmentation visibly changes it."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    noise = np.random.default_rng(0).normal(0, 20, base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def test_zero_probabilities_leave_the_image_alone():
    image = photo()
    assert Augmenter(0.0, 0.0, 0.0, seed=0)(image) is image


@pytest.mark.parametrize("which", ["crop", "photometric", "low_res"])
def test_each_augmentation_at_probability_one_changes_the_image_and_keeps_its_size(which):
    probabilities = {"crop": 0.0, "photometric": 0.0, "low_res": 0.0, which: 1.0}
    augmenter = Augmenter(probabilities["crop"], probabilities["photometric"],
                          probabilities["low_res"], seed=1)
    image = photo()
    for _ in range(10):
        out = augmenter.augment(image)
        assert out.size == image.size and out.mode == "RGB"
        difference = np.abs(np.asarray(out, np.int16) - np.asarray(image, np.int16)).mean()
        assert difference > 1.0, f"{which} left the image unchanged"


def test_low_resolution_removes_fine_detail():
    image = photo(112, 112)
    out = Augmenter(0.0, 0.0, 1.0, seed=2)(image)
    # neighbouring-pixel differences (the noise) shrink after a down/up-sample round trip
    detail = lambda im: np.abs(np.diff(np.asarray(im, np.int16), axis=1)).mean()
    assert detail(out) < 0.8 * detail(image)


def test_seed_makes_the_sequence_reproducible():
    image = photo()
    a, b = Augmenter(0.5, 0.5, 0.5, seed=7), Augmenter(0.5, 0.5, 0.5, seed=7)
    outputs_a = [np.asarray(a(image)) for _ in range(8)]
    outputs_b = [np.asarray(b(image)) for _ in range(8)]
    assert all((x == y).all() for x, y in zip(outputs_a, outputs_b))
    assert len({x.tobytes() for x in outputs_a}) > 1


def test_rejects_probabilities_outside_zero_one():
    with pytest.raises(ConfigError, match="low_res_augmentation_prob"):
        Augmenter(0.1, 0.2, 1.3)


def test_fast_contrast_gives_torchvision_pixels():
    rng = np.random.default_rng(3)
    for factor in (0.5, 0.9, 1.0, 1.37, 1.5):
        image = photo(int(rng.integers(3, 130)), int(rng.integers(3, 130)))
        assert np.array_equal(np.asarray(adjust_contrast(image, factor)),
                              np.asarray(F.adjust_contrast(image, factor)))
    grey = photo().convert("L")
    assert np.array_equal(np.asarray(adjust_contrast(grey, 1.2)),
                          np.asarray(F.adjust_contrast(grey, 1.2)))
