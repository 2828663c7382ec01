"""Metadata stays small at scale: every materialization stores it, runs after runs."""

from __future__ import annotations

import json

from assets.metadata import class_count_summary


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
