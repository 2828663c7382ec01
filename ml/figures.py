"""matplotlib figures drawn off-screen (Agg) and saved as PNG atomically.

matplotlib is imported on the first figure, not with the module: it costs ~25 MB of every
process that imports the code location, and most steps (verification, resize, packing) draw
nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from ml.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(figsize: tuple[float, float], dpi: int) -> "Figure":
    """An empty figure with an Agg canvas (no display, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: "Figure") -> bytes:
    """The figure laid out tightly, encoded as PNG."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def save_png(figure: "Figure", path: str | Path) -> Path:
    """The figure as PNG (`png_bytes`) written to `path` atomically."""
    path = Path(path)
    atomic_write_bytes(path, png_bytes(figure))
    return path
