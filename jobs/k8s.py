"""The Kubernetes variant of the code location (dagster-k8s): definitions_k8s.py builds it.

- Every preparation job (prepare, reverify_images, <dataset>_partitions, <dataset>_combine) runs on
  `k8s_job_executor`: each step is a Kubernetes Job of its own, at most IMAGEDS_MAX_CONCURRENT
  at a time per run (unset: no cap), so the datasets and partitions fan out over the cluster.
- Training: the `train` job runs its steps in the run's pod (in-process executor) and each
  `<dataset>/model` step launches its trainer as a separate pod through PipesK8sClient
  (`PipesK8sTrainerLauncher`). The trainer pod gets the resource limits of the step's
  `dagster-k8s/config` op tag, which assets/training.py sets to one `nvidia.com/gpu` per trainer
  process; the GPU is requested for the trainer pod only, never for a waiting step pod.
- Every pod mounts the same PersistentVolumeClaim at the storage root (outputs, the trainer's
  run folders), and the instance must be Postgres (config/dagster.postgres.yaml): pods on
  different nodes share no disk.

Settings come from the environment of the code location: IMAGEDS_K8S_IMAGE (required: the
project's image, the checkout at the same path as here), IMAGEDS_K8S_NAMESPACE (default
"default"), IMAGEDS_K8S_DATA_PVC (the claim mounted at storage_root), IMAGEDS_MAX_CONCURRENT.
docs/scaling.md walks through a deployment.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import dagster as dg
from dagster_k8s import PipesK8sClient, k8s_job_executor
from pydantic import Field

from ml.dataset_spec import DatasetsFile
from ml.errors import ConfigError
from resources.trainer_launchers import K8S_CONFIG_TAG, TrainerLauncher, quiet_pipes_preview

IMAGE_ENV, NAMESPACE_ENV, DATA_PVC_ENV = ("IMAGEDS_K8S_IMAGE", "IMAGEDS_K8S_NAMESPACE",
                                          "IMAGEDS_K8S_DATA_PVC")
DATA_VOLUME = "imageds-data"


def step_container_resources(op_tags: dict[str, Any]) -> dict[str, Any]:
    """The container resources (limits, requests) a step's `dagster-k8s/config` tag asks for."""
    raw = op_tags.get(K8S_CONFIG_TAG) or {}
    config = json.loads(raw) if isinstance(raw, str) else raw
    return dict(config.get("container_config", {}).get("resources", {}))


def data_volume(claim: str | None, mount_path: str) -> tuple[list[dict], list[dict]]:
    """(volumes, volume_mounts) that mount PVC `claim` at `mount_path`; empty without a claim."""
    if not claim:
        return [], []
    return ([{"name": DATA_VOLUME, "persistent_volume_claim": {"claim_name": claim}}],
            [{"name": DATA_VOLUME, "mount_path": mount_path}])


class PipesK8sTrainerLauncher(TrainerLauncher):
    """Runs the trainer as its own pod (dagster_k8s.PipesK8sClient), with the step's GPU limits."""

    image: str = Field(description="Image holding the project at the same path as the code pods")
    namespace: str = Field(default="default", description="Namespace of the trainer pods")
    data_volume_claim: Optional[str] = Field(
        default=None, description="PersistentVolumeClaim mounted at data_mount_path")
    data_mount_path: str = Field(default="/data", description="Where the claim is mounted "
                                 "(the datasets' storage_root)")
    load_incluster_config: bool = Field(default=True, description="True inside the cluster; "
                                        "False reads ~/.kube/config")

    def pod_spec(self, op_tags: dict[str, Any], cwd: str) -> dict[str, Any]:
        volumes, mounts = data_volume(self.data_volume_claim, self.data_mount_path)
        container: dict[str, Any] = {"working_dir": cwd,
                                     "resources": step_container_resources(op_tags)}
        if mounts:
            container["volume_mounts"] = mounts
        return {"containers": [container], **({"volumes": volumes} if volumes else {})}

    def launch(self, context: dg.AssetExecutionContext, command: list[str], env: dict[str, str],
               cwd: str) -> dg.PipesClientCompletedInvocation:
        client = PipesK8sClient(load_incluster_config=self.load_incluster_config)
        with quiet_pipes_preview():
            return client.run(context=context, image=self.image, command=command, env=env,
                              namespace=self.namespace,
                              base_pod_spec=self.pod_spec(dict(context.op_def.tags), cwd))


def k8s_executor(namespace: str, claim: str | None, mount_path: str) -> dg.ExecutorDefinition:
    """k8s_job_executor with the namespace and the data volume on every step pod."""
    volumes, mounts = data_volume(claim, mount_path)
    config: dict[str, Any] = {"job_namespace": namespace}
    if volumes:
        config.update(volumes=volumes, volume_mounts=mounts)
    return k8s_job_executor.configured(config, name="k8s_steps")


def k8s_location_options(datasets: DatasetsFile) -> dict[str, Any]:
    """build_definitions' keyword arguments for the Kubernetes code location."""
    image = os.environ.get(IMAGE_ENV, "").strip()
    if not image:
        raise ConfigError(f"{IMAGE_ENV} is not set: name the project's container image "
                          "(e.g. registry.example.com/imageds:1.0) for the trainer pods")
    namespace = os.environ.get(NAMESPACE_ENV, "default")
    claim = os.environ.get(DATA_PVC_ENV) or None
    mount_path = str(datasets.storage_root)
    return {"executor_def": k8s_executor(namespace, claim, mount_path),
            "train_executor_def": dg.in_process_executor,
            "trainer_launcher": PipesK8sTrainerLauncher(
                image=image, namespace=namespace, data_volume_claim=claim,
                data_mount_path=mount_path)}
