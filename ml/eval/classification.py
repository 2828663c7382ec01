"""Accuracy figures of a classifier on an imbalanced set: overall, per class and their mean,
and the same figures for the trivial predictor that always answers the majority class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.errors import DatasetError


@dataclass(frozen=True)
class ClassAccuracy:
    accuracy: float                    # fraction of samples right
    per_class: dict[int, float]        # class -> recall, for classes present in the labels
    mean_class_accuracy: float         # mean of per_class (every present class counts alike)
    samples: int
    chance_stderr: float               # standard error of mean_class_accuracy for a uniform
                                       # guess among the present classes: how much a model that
                                       # learnt nothing scatters on this evaluation set


def class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> ClassAccuracy:
    """Accuracy figures of `predicted` against `labels` (1-D integer arrays)."""
    predicted, labels = np.asarray(predicted).ravel(), np.asarray(labels).ravel()
    if labels.size == 0 or predicted.shape != labels.shape:
        raise DatasetError(f"class_accuracy: {predicted.size} predictions for {labels.size} "
                           "labels; need the same, non-zero number")
    right = predicted == labels
    classes, counts = np.unique(labels, return_counts=True)
    per_class = {int(c): float(right[labels == c].mean()) for c in classes}
    p = 1.0 / len(classes)
    chance_stderr = float(np.sqrt(np.sum(p * (1 - p) / counts)) / len(classes))
    return ClassAccuracy(float(right.mean()), per_class,
                         float(np.mean(list(per_class.values()))), int(labels.size),
                         chance_stderr)


def majority_baseline(train_counts: np.ndarray, labels: np.ndarray) -> ClassAccuracy:
    """The figures of always predicting the most frequent training class."""
    majority = int(np.argmax(train_counts))
    return class_accuracy(np.full_like(np.asarray(labels), majority), labels)
