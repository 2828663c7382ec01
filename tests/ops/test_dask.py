"""The prepare job on a real distributed engine: dagster-dask submitting every step to a Dask
cluster (a scheduler and two worker processes on loopback) that this test starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.assets.helpers import make_folder_dataset, make_pairs_dataset
from tests.services import require_module

pytestmark = [pytest.mark.slow, pytest.mark.service]

REPO = Path(__file__).resolve().parents[2]


def test_prepare_runs_every_step_on_dask_workers(tmp_path, monkeypatch):
    require_module("dagster_dask", "dagster-dask==0.29.27")
    from dask.distributed import Client, LocalCluster
    import yaml

    folder = make_folder_dataset(tmp_path / "src" / "folder", classes=2, per_class=4)
    pairs = make_pairs_dataset(tmp_path / "src" / "pairs", n=4)
    datasets = tmp_path / "datasets.yaml"
    datasets.write_text(yaml.safe_dump({"storage_root": str(tmp_path / "outputs"), "datasets": [
        {"name": "animals", "kind": "image_folder", "source": {"root": str(folder)},
         "resize": {"width": 32, "height": 32, "workers": 1}},
        {"name": "pairs", "kind": "before_after", "source": {"root": str(pairs)},
         "resize": {"width": 32, "height": 32, "workers": 1}}]}))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    # The workers inherit this environment: they load the same datasets and instance.
    monkeypatch.setenv("IMAGEDS_DATASETS", str(datasets))
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      scheduler_port=0, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        assert len(worker_pids) == 2
        env = dict(os.environ, IMAGEDS_DASK_SCHEDULER=cluster.scheduler_address)
        dagster = Path(sys.executable).with_name("dagster")
        proc = subprocess.run([str(dagster), "job", "execute", "-m", "definitions",
                               "-j", "prepare_dask"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.job_name == "prepare_dask" and run.is_success
        starts = [r.event_log_entry for r in instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_START).records]
    steps = {e.step_key for e in starts}
    assert steps == {f"{d}__{a}" for d in ("animals", "pairs")
                     for a in ("catalog", "verification_report", "quality_report", "resized", "splits")}
    ran_on = {e.dagster_event.pid for e in starts}
    assert ran_on <= worker_pids and len(ran_on) == 2      # on the workers, both of them
    for name, images in (("animals", 8), ("pairs", 8)):
        assert len(pd.read_parquet(tmp_path / "outputs" / name / "splits.parquet")) == images
