"""Image issues with cleanvision's names, scores and default thresholds, from the signal columns
verification records (ml/quality/signals.py). A score is in 0..1, low is bad, and an image has
the issue when its score is below the threshold (cleanvision's convention):

| issue | score | default threshold (cleanvision's) |
| --- | --- | --- |
| dark | brightness_p99 | 0.32 |
| light | 1 - brightness_p5 | 0.05 |
| blurry | min(1, (1 - exp(-0.01 blurriness)) + (1 - exp(-0.01 grayscale_std) if above 0.35 else 0)) | 0.18 (cleanvision: 0.29, and 0.18 for the histogram term) |
| low_information | min(1, 0.1 entropy) | 0.3 |
| odd_aspect_ratio | min(width / height, height / width) | 0.35 |
| odd_size | 1 - distance of sqrt(width x height) from the middle of the dataset's [q1 - 3 iqr, q3 + 3 iqr], over that span | 0.5 |
| grayscale | 0 when every pixel's channels agree (our test looks at the pixels; cleanvision at the file's mode) | - |

Blurry differs from cleanvision on purpose: our edge spread leaves out the 1-pixel border that
Pillow's filter does not touch (cleanvision's value is dominated by it on a 64 px image, which
is why it finds 1 of 20 blurred photos in bench/quality.py), and the histogram spread is counted
as for cleanvision's 64 x 48 image. On that planted set clean photos score 0.20 and up, blurred
ones 0.15 and below, and dark, washed-out and flat images (narrow histograms, few edges) are
kept out of `blurry` by the histogram term from 0.35: hence 0.18 and 0.35.

Exact duplicates share a sha256; near duplicates' perceptual hashes differ in at most
`near_duplicate_distance` bits (ml/quality/duplicates.py).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd

from pydantic import Field

from ml.options import Float, Int, Options

ISSUES = ("dark", "light", "blurry", "low_information", "odd_aspect_ratio", "odd_size",
          "grayscale")
BLUR_NORMALIZING = 0.01              # cleanvision's
BLUR_COLOR_THRESHOLD = 0.35          # cleanvision: 0.18 (see the table above)
ENTROPY_NORMALIZING = 0.1                                 # cleanvision's low_information's
SIZE_IQR_FACTOR = 3.0                                     # cleanvision's odd_size iqr_factor


Threshold = Annotated[Float, Field(ge=0.0, le=1.0)]


class QualityConfig(Options):
    """The dataset's `quality:` section: the score below which an image has each issue, and how
    close two perceptual hashes must be for near duplicates."""

    dark: Threshold = Field(0.32, description="Flags an image whose 99th brightness percentile is below it")
    light: Threshold = Field(0.05, description="Flags an image when 1 - its 5th brightness percentile is below it (washed out)")
    blurry: Threshold = Field(0.18, description="Flags an image whose edge score is below it (cleanvision's, without the 1-pixel border Pillow leaves unfiltered; cleanvision's default 0.29 fits its own border-inflated value)")
    low_information: Threshold = Field(0.3, description="Flags an image when 0.1 x its histogram entropy is below it")
    odd_aspect_ratio: Threshold = Field(0.35, description="Flags an image when min(w/h, h/w) is below it")
    odd_size: Threshold = Field(0.5, description="Flags an image whose size is far outside the dataset's interquartile range (cleanvision's score)")
    near_duplicate_distance: Annotated[Int, Field(ge=0, le=16)] = Field(4, description="Perceptual hashes at most this many bits apart are near duplicates; a chain of near pairs joining more than 4 split units is a cluster of similar images (aligned faces), reported, not merged")



def issue_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Score per issue (NaN where the signals were not measured), one row per table row."""
    f = {name: table[name].astype("float64").to_numpy() if name in table.columns
         else np.full(len(table), np.nan) for name in ("brightness_p99", "brightness_p5",
                                                        "blurriness", "grayscale_std", "entropy")}
    blur = 1 - np.exp(-f["blurriness"] * BLUR_NORMALIZING)
    spread = 1 - np.exp(-f["grayscale_std"] * BLUR_NORMALIZING)
    spread = np.where(spread <= BLUR_COLOR_THRESHOLD, 0.0, spread)
    width = table["width"].astype("float64").to_numpy()
    height = table["height"].astype("float64").to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.minimum(width / height, height / width)
    grey = table["grayscale"] if "grayscale" in table.columns else pd.Series(pd.NA, index=table.index)
    return pd.DataFrame({
        "dark": f["brightness_p99"],
        "light": 1 - f["brightness_p5"],
        "blurry": np.minimum(blur + spread, 1.0),
        "low_information": np.minimum(ENTROPY_NORMALIZING * f["entropy"], 1.0),
        "odd_aspect_ratio": np.where((width > 0) & (height > 0), aspect, np.nan),
        "odd_size": _size_scores(np.sqrt(width * height)),
        "grayscale": np.where(grey.isna().to_numpy(), np.nan,
                              np.where(grey.fillna(False).to_numpy(bool), 0.0, 1.0)),
    }, index=table.index)


def _size_scores(size: np.ndarray) -> np.ndarray:
    known = size[np.isfinite(size) & (size > 0)]
    if known.size == 0:
        return np.full(size.size, np.nan)
    q1, q3 = np.percentile(known, [25, 75])
    low, high = q1 - SIZE_IQR_FACTOR * (q3 - q1), q3 + SIZE_IQR_FACTOR * (q3 - q1)
    middle, span = (low + high) / 2, (high - low) or max((low + high) / 2, 1.0)
    return 1 - np.clip(np.abs(size - middle) / span, 0, 1)


def flag_issues(scores: pd.DataFrame, config: QualityConfig) -> pd.DataFrame:
    """True where an image has the issue (a NaN score never flags)."""
    flags = {}
    for issue in ISSUES:
        threshold = 0.5 if issue == "grayscale" else getattr(config, issue)
        flags[issue] = (scores[issue] < threshold).fillna(False).astype(bool)
    return pd.DataFrame(flags, index=scores.index)
