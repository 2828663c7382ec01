"""The quality gate: a model's figure must beat its baseline by the task's margin."""

import math

import pytest

from ml.train.gate import GATES


def test_face_needs_its_margin_over_raw_pixels():
    gate = GATES["face"]
    assert gate.judge({"val_accuracy": 0.93, "raw_pixel_accuracy": 0.70}).passed
    near = gate.judge({"val_accuracy": 0.80, "raw_pixel_accuracy": 0.70})
    assert not near.passed and "by the required 0.15" in near.sentence
    assert gate.judge({"val_accuracy": 0.80, "raw_pixel_accuracy": 0.70}, margin=0.05).passed


@pytest.mark.parametrize("summary", [
    {"test_psnr_db": math.nan, "identity_psnr_db": 22.9},
    {"identity_psnr_db": 22.9},
])
def test_a_diverged_or_unevaluated_model_fails(summary):
    verdict = GATES["unet"].judge(summary)
    assert not verdict.passed and verdict.sentence


def test_chance_scatter_raises_the_margin():
    summary = {"mean_class_accuracy": 0.40, "majority_mean_class_accuracy": 0.25,
               "mean_class_accuracy_chance_stderr": 0.08}
    verdict = GATES["classify"].judge(summary)
    assert not verdict.passed and verdict.margin == pytest.approx(0.16)
    assert GATES["classify"].judge({**summary, "mean_class_accuracy_chance_stderr": 0.01}).passed


def test_a_dataset_may_lower_the_margin_below_zero():
    verdict = GATES["contrastive"].judge(
        {"knn_accuracy": 0.3, "knn_accuracy_random_init": 0.4}, margin=-1.0)
    assert verdict.passed and verdict.margin == -1.0
