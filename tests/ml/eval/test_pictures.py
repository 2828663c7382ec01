"""Evaluation pictures: what they draw is checked by their pixels, not only their existence."""

import numpy as np
from PIL import Image

from ml.eval.pictures import confusion_picture, image_grid_picture, verification_picture


def test_confusion_matrix_shows_a_perfect_diagonal(tmp_path):
    labels = np.repeat(np.arange(3), 10)
    path = confusion_picture(labels, labels, {0: "cat", 1: "dog", 2: "owl"}, tmp_path / "c.png")
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    dark_blue = (pixels[..., 2] > 100) & (pixels[..., 0] < 60)
    assert dark_blue.sum() > 1000, "three full cells on the diagonal"


def test_many_classes_keep_the_most_frequent(tmp_path):
    labels = np.repeat(np.arange(100), np.arange(1, 101))
    path = confusion_picture(labels, labels, {}, tmp_path / "c.png")
    with Image.open(path) as image:
        assert image.width <= 1300 and image.height <= 1100


def test_verification_picture_draws_each_set(tmp_path):
    rng = np.random.default_rng(0)
    same = np.repeat([True, False], 50)
    dist = np.where(same, rng.uniform(0, 1.5, 100), rng.uniform(1, 4, 100))
    curves = {name: {"model": (np.linspace(0, 1, 20), np.sqrt(np.linspace(0, 1, 20)), dist),
                     "raw pixels": (np.linspace(0, 1, 20), np.linspace(0, 1, 20), dist)}
              for name in ("lfw", "cfp_fp")}
    path = verification_picture(curves, {"lfw": same, "cfp_fp": same}, tmp_path / "v.png")
    with Image.open(path) as image:
        assert image.height > image.width / 2, "two rows: one per set"


def test_image_grid_keeps_the_images(tmp_path):
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    path = image_grid_picture([[red, red, red]], ["input", "prediction", "target"],
                              tmp_path / "g.png")
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert ((pixels[..., 0] > 200) & (pixels[..., 1] < 50)).sum() > 3 * 500
