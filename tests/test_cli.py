"""`dagster job execute` as a subprocess on the bundled sample data, as `make demo` runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from demo.sample_data import generate_all

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The repo's sample data (generated once; generation skips complete sets)."""
    out = REPO / "data" / "sample"
    generate_all(out)
    return out


def absolutized_datasets(tmp_path: Path) -> Path:
    """The repo's datasets.yaml with absolute source paths and outputs in tmp_path."""
    doc = yaml.safe_load((REPO / "config" / "datasets.yaml").read_text())
    doc["storage_root"] = str(tmp_path / "outputs")
    for d in doc["datasets"]:
        d["source"] = {k: str(REPO / v) if isinstance(v, str) and v.startswith("data/") else v
                       for k, v in d["source"].items()}
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_dagster_job_execute_prepare_on_sample_data(tmp_path, sample_data):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = dict(os.environ, DAGSTER_HOME=str(home), DAGSTER_DISABLE_TELEMETRY="1",
               IMAGEDS_DATASETS=str(absolutized_datasets(tmp_path)))
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(dagster), "job", "execute", "-m", "definitions", "-j", "prepare",
                           "-c", "config/demo.yaml"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "outputs"
    planted = json.loads((sample_data / "faces" / "PLANTED.json").read_text())
    report = json.loads((out / "faces" / "assets" / "missing_images_report.json").read_text())
    assert sorted(report["missing_identifiers"]) == sorted(i + ".jpg" for i in planted["missing"])
    assert report["corrupt_count"] == len(planted["corrupt"])
    splits = pd.read_parquet(out / "faces" / "splits.parquet")
    assert splits.groupby("label")["split"].nunique().max() == 1      # identities held out
    assert len(splits) == 800 - len(planted["missing"]) - len(planted["corrupt"])
    for name in ("pairs", "sequences", "inat"):
        assert (out / name / "splits" / "train.parquet").exists(), name
    assert (home / "storage").exists()       # runs recorded in DAGSTER_HOME's sqlite storage
