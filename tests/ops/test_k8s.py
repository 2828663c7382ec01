"""The Kubernetes code location: it loads in `dagster definitions validate`, its preparation
jobs run steps as Kubernetes Jobs with the cap, and a training step's trainer pod asks for its
GPUs through the step's `dagster-k8s/config` op tag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster_k8s.pipes import build_pod_body

from definitions import build_definitions
from jobs.k8s import IMAGE_ENV, PipesK8sTrainerLauncher, k8s_location_options
from ml.dataset_spec import load_datasets
from ml.errors import ConfigError
from tests.assets.helpers import make_pairs_dataset

REPO = Path(__file__).resolve().parents[2]
IMAGE = "registry.example.com/imageds:1.0"


@pytest.fixture
def datasets(tmp_path):
    import yaml

    pairs = make_pairs_dataset(tmp_path / "pairs", n=2)
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump({"storage_root": str(tmp_path / "outputs"), "datasets": [
        {"name": "pairs", "kind": "before_after", "source": {"root": str(pairs)},
         "train": {"task": "unet", "processes": 2}},
        {"name": "big", "kind": "before_after", "source": {"root": str(pairs)}, "partitions": 4}]}))
    return load_datasets(path)


def test_k8s_location_runs_steps_as_jobs_and_gives_trainer_pods_their_gpus(datasets,
                                                                         monkeypatch):
    monkeypatch.setenv(IMAGE_ENV, IMAGE)
    monkeypatch.setenv("IMAGEDS_K8S_DATA_PVC", "imageds-data")
    monkeypatch.setenv("IMAGEDS_MAX_CONCURRENT", "6")
    defs = build_definitions(datasets, **k8s_location_options(datasets))
    for name in ("prepare", "reverify_images", "big_partitions", "big_combine"):
        job = defs.resolve_job_def(name)
        assert job.executor_def.name == "k8s_steps", name
    assert defs.resolve_job_def("prepare").run_config == {
        "execution": {"config": {"max_concurrent": 6}}}                 # IMAGEDS_MAX_CONCURRENT
    assert defs.resolve_job_def("train").executor_def.name == "in_process"
    assert "prepare_dask" not in {j.name for j in defs.resolve_all_job_defs()}

    model = defs.resolve_assets_def(["pairs", "model"])
    launcher = defs.resources["trainer_launcher"]
    assert isinstance(launcher, PipesK8sTrainerLauncher) and launcher.image == IMAGE
    spec = launcher.pod_spec(dict(model.op.tags), cwd="/opt/imageds")
    pod = build_pod_body("trainer", IMAGE, ["python", "-m", "resources.pipes_entry", "unet"],
                         {"PYTHONPATH": "/opt/imageds"}, None, spec)
    container = pod.spec.containers[0]
    assert container.resources.limits == {"nvidia.com/gpu": "2"}     # one per trainer process
    assert container.image == IMAGE and container.working_dir == "/opt/imageds"
    assert container.volume_mounts[0].mount_path == str(datasets.storage_root)
    assert pod.spec.volumes[0].persistent_volume_claim.claim_name == "imageds-data"


def test_k8s_location_names_the_missing_image(datasets, monkeypatch):
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    with pytest.raises(ConfigError, match=IMAGE_ENV):
        k8s_location_options(datasets)


@pytest.mark.slow
def test_k8s_location_loads_in_dagster_definitions_validate():
    env = dict(os.environ, IMAGEDS_K8S_IMAGE=IMAGE, DAGSTER_DISABLE_TELEMETRY="1")
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(dagster), "definitions", "validate", "-m", "definitions_k8s"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Validation successful for code location definitions_k8s" in proc.stderr + proc.stdout
