"""Evaluation pictures a person reads at a glance (PNG, written atomically with matplotlib):

- `verification_picture`: per validation set, the ROC of the model against raw pixels and the
  distributions of same- and different-identity pair distances (face);
- `confusion_picture`: the row-normalised confusion matrix (classify);
- `image_grid_picture`: rows of images under column titles (unet: input / prediction / target;
  contrastive: a held-out query and its nearest training frames).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ml.figures import new_figure, save_png

MAX_CONFUSION_CLASSES = 40      # beyond this the matrix shows the most frequent classes only


def verification_picture(sets: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]],
                         issame: Mapping[str, np.ndarray], path: str | Path,
                         title: str = "") -> Path:
    """`sets[set][curve] = (fpr, tpr, squared distances)` for curves such as "model" and
    "raw pixels"; `issame[set]` flags the same-identity pairs. One row per set: the ROC curves,
    then the model's distance histograms of same and different pairs."""
    figure = new_figure(figsize=(9, 3.4 * len(sets)), dpi=90)
    for row, (name, curves) in enumerate(sets.items()):
        roc = figure.add_subplot(len(sets), 2, 2 * row + 1)
        for label, (fpr, tpr, _) in curves.items():
            order = np.argsort(fpr, kind="stable")
            roc.plot(np.asarray(fpr)[order], np.asarray(tpr)[order], label=label)
        roc.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        roc.set_xlabel("false accept rate")
        roc.set_ylabel("true accept rate")
        roc.set_title(f"{name}: ROC")
        roc.legend(fontsize=8, loc="lower right")
        roc.grid(alpha=0.3)
        hist = figure.add_subplot(len(sets), 2, 2 * row + 2)
        label, (_, _, dist) = next(iter(curves.items()))
        same = np.asarray(issame[name], bool)
        bins = np.linspace(0, max(4.0, float(np.max(dist)) if len(dist) else 4.0), 40)
        hist.hist(dist[same], bins=bins, alpha=0.6, label=f"same identity ({same.sum()})")
        hist.hist(dist[~same], bins=bins, alpha=0.6, label=f"different ({(~same).sum()})")
        hist.set_xlabel(f"squared distance ({label})")
        hist.set_ylabel("pairs")
        hist.set_title(f"{name}: pair distances")
        hist.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return save_png(figure, path)


def confusion_picture(predicted: np.ndarray, labels: np.ndarray, names: Mapping[int, str],
                      path: str | Path, title: str = "") -> Path:
    """The confusion matrix, each true class's row as fractions (its recall on the diagonal);
    with more than MAX_CONFUSION_CLASSES classes, the most frequent ones."""
    predicted, labels = np.asarray(predicted).ravel(), np.asarray(labels).ravel()
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size > MAX_CONFUSION_CLASSES:
        classes = np.sort(classes[np.argsort(-counts, kind="stable")[:MAX_CONFUSION_CLASSES]])
    position = {int(c): i for i, c in enumerate(classes)}
    matrix = np.zeros((classes.size, classes.size))
    for true, guess in zip(labels, predicted):
        if int(true) in position and int(guess) in position:
            matrix[position[int(true)], position[int(guess)]] += 1
    rows = np.array([np.sum(labels == c) for c in classes], dtype=float)
    matrix = matrix / np.maximum(rows, 1)[:, None]
    side = min(12.0, 3.0 + 0.35 * classes.size)
    figure = new_figure(figsize=(side + 1.5, side), dpi=90)
    axes = figure.add_subplot(1, 1, 1)
    shown = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(shown, ax=axes, fraction=0.046, label="share of the true class")
    ticks = [str(names.get(int(c), c))[:18] for c in classes]
    axes.set_xticks(range(classes.size), ticks, rotation=90, fontsize=7)
    axes.set_yticks(range(classes.size), ticks, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if classes.size <= 15:
        for (i, j), value in np.ndenumerate(matrix):
            if value > 0:
                axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if value > 0.5 else "black")
    axes.set_title(title or "confusion matrix")
    return save_png(figure, path)


def image_grid_picture(rows: Sequence[Sequence[np.ndarray]], column_titles: Sequence[str],
                       path: str | Path, title: str = "",
                       captions: Sequence[Sequence[str]] | None = None) -> Path:
    """A grid of H x W x 3 images (uint8, or floats in 0..1), one list per row, titled by
    column; `captions[r][c]` under each image when given."""
    columns = max(len(r) for r in rows)
    figure = new_figure(figsize=(max(1.9 * columns, 5.0), 2.0 * len(rows) + 0.4), dpi=90)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            axes = figure.add_subplot(len(rows), columns, r * columns + c + 1)
            axes.imshow(np.clip(image, 0, 1) if image.dtype != np.uint8 else image)
            axes.set_xticks([])
            axes.set_yticks([])
            if r == 0 and c < len(column_titles):
                axes.set_title(column_titles[c], fontsize=9)
            if captions is not None:
                axes.set_xlabel(captions[r][c], fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_png(figure, path)
