"""Metadata stays small at scale: every materialization stores it, runs after runs."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from PIL import Image

from assets.metadata import INLINE_IMAGE_BYTES, class_count_summary, image_markdown


def test_per_class_counts_are_bounded_at_85k_identities():
    counts = {f"id_{i:06d}": 20 + i % 90 for i in range(85_000)}      # MS1MV2's scale
    summary = class_count_summary(counts)
    assert len(json.dumps(summary)) < 4_000                          # was ~1-3 MB of JSON
    assert summary["classes"] == 85_000 and summary["min"] == 20 and summary["max"] == 109
    assert len(summary["largest"]) == 50 and set(summary["largest"].values()) == {109}


def test_small_datasets_show_every_class():
    summary = class_count_summary({"cat": 3, "dog": 5})
    assert summary == {"classes": 2, "min": 3, "median": 4.0, "max": 5,
                       "largest": {"dog": 5, "cat": 3}}
    assert class_count_summary({})["classes"] == 0


def test_inlined_pictures_stay_within_their_budget():
    """A thumbnail grid of photos is ~75 KB as PNG; inlined whole in every materialization's
    markdown it put the splits asset at 165 KB of metadata."""
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert len(buf.getvalue()) > 5 * INLINE_IMAGE_BYTES
    text = image_markdown(buf.getvalue(), "grid")
    kind, payload = text.split("](data:image/")[1].rstrip(")").split(";base64,")
    assert kind == "jpeg" and len(base64.b64decode(payload)) <= INLINE_IMAGE_BYTES
    assert Image.open(io.BytesIO(base64.b64decode(payload))).width >= 32
    small = io.BytesIO()
    Image.new("RGB", (40, 30), (9, 9, 9)).save(small, format="PNG")
    assert image_markdown(small.getvalue(), "x") == \
        f"![x](data:image/png;base64,{base64.b64encode(small.getvalue()).decode()})"
