"""A grouped bar chart drawn with Pillow, for charts a prepare step makes on every run.

matplotlib costs ~0.35 s to import and ~0.4 s for its first figure (fonts, layout): more than
the rest of the splits step's chart work at a million samples, for a picture of a few bars.
Pillow, already loaded by every step, draws the same chart in a few milliseconds: bars per
label and series (matplotlib's default colours), a y axis with round ticks, labels rotated
under the bars, a legend and a title.
"""

from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")          # matplotlib's tab10, its default cycle
HEIGHT = 360
MAX_WIDTH = 1000
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 34, 96
LABEL_ANGLE = 60                                     # degrees, as the matplotlib chart had
TICKS = 5


def nice_step(top: float, ticks: int = TICKS) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about `ticks` ticks to `top`."""
    raw = max(top, 1) / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def grouped_bar_png(labels: Sequence[str], series: Mapping[str, Sequence[int]], title: str,
                    ylabel: str) -> bytes:
    """PNG of one bar per (label, series), the series side by side within each label."""
    font = ImageFont.load_default(size=11)
    small = ImageFont.load_default(size=9)
    width = min(MAX_WIDTH, max(600, 25 * len(labels) + MARGIN_LEFT + MARGIN_RIGHT + 40))
    image = Image.new("RGB", (width, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, right = MARGIN_LEFT, width - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    peak = max((v for values in series.values() for v in values), default=0)
    step = nice_step(peak)
    y_max = step * max(1, math.ceil(peak * 1.15 / step))     # headroom for the legend

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * value / y_max

    for k in range(int(round(y_max / step)) + 1):            # the y axis and its grid
        value = k * step
        y = y_of(value)
        draw.line([(left, y), (right, y)], fill="#e6e6e6")
        text = f"{value:g}"
        draw.text((left - 6, y), text, fill="black", font=small, anchor="rm")
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black")
    ylabel_image = Image.new("RGBA", (int(draw.textlength(ylabel, font=font)) + 4, 14),
                             (255, 255, 255, 0))
    ImageDraw.Draw(ylabel_image).text((2, 0), ylabel, fill="black", font=font)
    rotated = ylabel_image.rotate(90, expand=True)
    image.paste(rotated, (6, (top + bottom - rotated.height) // 2), rotated)

    slot = (right - left) / max(1, len(labels))
    bar = 0.8 * slot / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):       # the bars
        colour = COLOURS[i % len(COLOURS)]
        for j, value in enumerate(values):
            x0 = left + j * slot + 0.1 * slot + i * bar
            if value > 0:
                draw.rectangle([x0, y_of(value), x0 + bar - 1, bottom - 1], fill=colour)
    for j, label in enumerate(labels):                         # labels under the bars
        text = Image.new("RGBA", (int(draw.textlength(label, font=small)) + 4, 12),
                         (255, 255, 255, 0))
        ImageDraw.Draw(text).text((2, 0), label, fill="black", font=small)
        turned = text.rotate(LABEL_ANGLE, expand=True)
        x_tick = left + (j + 0.5) * slot
        image.paste(turned, (int(x_tick - turned.width), bottom + 3), turned)
    draw.text(((left + right) / 2, 8), title, fill="black", font=font, anchor="ma")
    y = top + 4                                               # the legend, top right
    for i, name in enumerate(series):
        x = right - 8 - int(draw.textlength(name, font=small)) - 14
        draw.rectangle([x, y + 2, x + 9, y + 10], fill=COLOURS[i % len(COLOURS)])
        draw.text((x + 13, y), name, fill="black", font=small)
        y += 14
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
