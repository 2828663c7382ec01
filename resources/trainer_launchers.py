"""Where a training asset's trainer process runs: the `trainer_launcher` resource.

The `<dataset>/model` asset (assets/training.py) builds the trainer's command line and hands it
to this resource, which starts it through Dagster Pipes and returns the completed invocation
(its log lines, metrics and summary). On one machine the trainer is a local subprocess
(`SubprocessTrainerLauncher`, the default in definitions.py); on Kubernetes it is a pod of its
own with the GPUs the step asks for (`PipesK8sTrainerLauncher` in jobs/k8s.py).
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from contextlib import contextmanager

import dagster as dg

# A training step's GPU request, as an op tag Kubernetes understands: the k8s executor gives a
# step pod these limits, and PipesK8sTrainerLauncher gives them to the trainer's pod. Executors
# without Kubernetes ignore the tag.
K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_RESOURCE = "nvidia.com/gpu"


def k8s_gpu_config(gpus: int) -> dict:
    """The `dagster-k8s/config` value that limits a container to `gpus` GPUs."""
    return {"container_config": {"resources": {"limits": {GPU_RESOURCE: str(gpus)}}}}


class TrainerLauncher(dg.ConfigurableResource):
    """Starts a trainer command through Dagster Pipes and waits for it to finish."""

    @abstractmethod
    def launch(self, context: dg.AssetExecutionContext, command: list[str], env: dict[str, str],
               cwd: str) -> dg.PipesClientCompletedInvocation:
        """Run `command` (the trainer) in a Pipes session of `context`; raise if it fails."""


class SubprocessTrainerLauncher(TrainerLauncher):
    """Runs the trainer as a subprocess of the step (dg.PipesSubprocessClient)."""

    def launch(self, context: dg.AssetExecutionContext, command: list[str], env: dict[str, str],
               cwd: str) -> dg.PipesClientCompletedInvocation:
        with quiet_pipes_preview():
            return dg.PipesSubprocessClient().run(command=command, context=context, env=env,
                                                  cwd=cwd)


@contextmanager
def quiet_pipes_preview():
    """Dagster's own Pipes message handler reads a preview API of itself and warns about it on
    every launch (PreviewWarning: PipesMessageReader.expected_writer_count); nothing a user can
    act on, so it is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning,
                                message=".*expected_writer_count")
        yield
