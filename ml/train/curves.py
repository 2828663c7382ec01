"""Training curves: a PNG with one panel per group of metrics, drawn from Reporter.history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ml.figures import new_figure, save_png


def plot_curves(history: Sequence[Mapping[str, Any]], panels: Mapping[str, Sequence[str]],
                path: str | Path, title: str = "") -> Path:
    """Write `path` (PNG, atomically): for each panel (title -> metric names) the named metrics
    of the metric events in `history` against the training step. Metrics absent from the
    history are skipped; a panel with none shows 'no data'."""
    figure = new_figure(figsize=(5 * len(panels), 3.6), dpi=100)
    for column, (panel, names) in enumerate(panels.items(), start=1):
        axes = figure.add_subplot(1, len(panels), column)
        plotted = False
        for name in names:
            points = [(e["step"], e[name]) for e in history if name in e]
            if not points:
                continue
            steps, values = zip(*points)
            axes.plot(steps, values, marker="o" if len(points) < 40 else None, markersize=3,
                      label=name)
            plotted = True
        if plotted:
            axes.legend(fontsize=8)
        else:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        axes.set_title(panel)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return save_png(figure, path)
