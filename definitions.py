"""Dagster entry point (workspace.yaml loads this module): builds Definitions from
config/datasets.yaml, one asset group per dataset, plus jobs, schedules and IO managers."""

from __future__ import annotations

import dagster as dg

from assets.factory import build_dataset_assets
from jobs.dataset_jobs import prepare_job, reverify_job, reverify_schedule, partition_jobs
from jobs.sensors import images_changed_sensor, new_images_sensor, run_failure_summary_sensor
from jobs.training import train_job
from ml.arrow_memory import return_freed_memory
from ml.dataset_spec import DatasetsFile, load_datasets
from resources.io_managers import HandleIOManager, ParquetFrameIOManager
from resources.trainer_launchers import SubprocessTrainerLauncher, TrainerLauncher


def build_definitions(datasets: DatasetsFile, *, executor_def: dg.ExecutorDefinition | None = None,
                      train_executor_def: dg.ExecutorDefinition | None = None,
                      trainer_launcher: TrainerLauncher | None = None) -> dg.Definitions:
    """The code location. Defaults: one machine (multiprocess executor, trainers as local
    subprocesses, plus prepare_dask); jobs/k8s.py passes the Kubernetes executor and launcher."""
    return_freed_memory()        # every process that runs steps builds the definitions first
    assets = [a for spec in datasets.datasets for a in build_dataset_assets(spec)]
    reverify = reverify_job(datasets, executor_def)
    prepare = prepare_job(datasets, executor_def=executor_def)
    on_dask = []
    if executor_def is None:              # dagster-dask only where the job exists (not on k8s)
        from jobs.dask_prepare import prepare_on_dask_job
        on_dask = [prepare_on_dask_job(datasets)]
    return dg.Definitions(
        assets=assets,
        jobs=[prepare, *on_dask, reverify, train_job(train_executor_def),
              *partition_jobs(datasets, executor_def)],
        schedules=[reverify_schedule(reverify)],
        sensors=[images_changed_sensor(datasets, reverify),
                 new_images_sensor(datasets, prepare, assets), run_failure_summary_sensor],
        resources={
            "frame_io_manager": ParquetFrameIOManager(base_dir=str(datasets.storage_root)),
            "handle_io_manager": HandleIOManager(base_dir=str(datasets.storage_root)),
            "trainer_launcher": trainer_launcher or SubprocessTrainerLauncher(),
        },
    )


defs = build_definitions(load_datasets())
