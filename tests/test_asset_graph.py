"""The asset graph of the project's own datasets config, as a reviewed snapshot (as
dagster-open-platform keeps one): every asset with its dependencies and checks, every job's
assets, every schedule and sensor. A change to the graph fails here until the snapshot is
rewritten, so it shows in review: IMAGEDS_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest
tests/test_asset_graph.py rewrites tests/snapshots/asset_graph.txt."""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from definitions import build_definitions
from ml.dataset_spec import load_datasets

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.txt"


def _name(key: dg.AssetKey) -> str:
    return key.to_user_string()


def graph_text(defs: dg.Definitions) -> str:
    graph = defs.resolve_asset_graph()
    lines = []
    for key in sorted(graph.get_all_asset_keys(), key=_name):
        node = graph.get(key)
        deps = ", ".join(sorted(_name(k) for k in node.parent_keys)) or "-"
        checks = ", ".join(sorted(c.name for c in node.check_keys)) or "-"
        lines.append(f"asset {_name(key)} [group {node.group_name}] <- {deps} | checks: {checks}")
    for job in sorted(defs.jobs, key=lambda j: j.name):
        keys = defs.resolve_job_def(job.name).asset_layer.executable_asset_keys
        lines.append(f"job {job.name}: " + (", ".join(sorted(map(_name, keys))) or "-"))
    for schedule in sorted(defs.schedules, key=lambda s: s.name):
        lines.append(f"schedule {schedule.name}: {schedule.cron_schedule} -> {schedule.job_name}")
    for sensor in sorted(defs.sensors, key=lambda s: s.name):
        jobs = ", ".join(sorted(t.job_name for t in sensor.targets)) or "any job's runs"
        lines.append(f"sensor {sensor.name} -> {jobs}")
    return "\n".join(lines) + "\n"


def test_the_asset_graph_is_the_reviewed_snapshot(monkeypatch):
    monkeypatch.delenv("IMAGEDS_REVERIFY_CRON", raising=False)
    monkeypatch.chdir(REPO)
    text = graph_text(build_definitions(load_datasets(REPO / "config" / "datasets.yaml")))
    if os.environ.get("IMAGEDS_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(text)
    expected = SNAPSHOT.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                        "snapshot", "now"))
    assert text == expected, (
        f"the asset graph changed; review the difference, then rewrite the snapshot with "
        f"IMAGEDS_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_asset_graph.py:\n{diff}")


def test_loading_the_definitions_does_not_import_torch_or_matplotlib():
    """Every step's process loads the definitions; torch (~400 MB of memory and its threads,
    which turn every process pool from fork to forkserver) belongs only to training code: a
    module-level import of ml.train.checkpoint in an asset raised exists verification's peak
    memory at 1M samples from 1.35 to 1.7-1.8 GB. matplotlib (~25 MB) is imported by the steps
    that draw (ml/figures.py), not by every step."""
    code = ("import sys; sys.path.insert(0, '.'); import definitions; "
            "print(sorted(m for m in ('torch', 'torchvision', 'matplotlib') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
