"""Dagster entry point (workspace.yaml loads this module): builds Definitions from
config/datasets.yaml, one asset group per dataset, plus jobs, schedules and IO managers."""

from __future__ import annotations

import dagster as dg

from assets.factory import build_dataset_assets
from jobs.definitions import prepare_job, reverify_job, reverify_schedule
from jobs.sensors import images_changed_sensor
from jobs.training import train_job
from ml.dataset_spec import DatasetsFile, load_datasets
from resources.io_managers import HandleIOManager, ParquetFrameIOManager


def build_definitions(datasets: DatasetsFile) -> dg.Definitions:
    assets = [a for spec in datasets.datasets for a in build_dataset_assets(spec)]
    reverify = reverify_job(datasets)
    return dg.Definitions(
        assets=assets,
        jobs=[prepare_job(), reverify, train_job()],
        schedules=[reverify_schedule(reverify)],
        sensors=[images_changed_sensor(datasets, reverify)],
        resources={
            "frame_io_manager": ParquetFrameIOManager(base_dir=str(datasets.storage_root)),
            "handle_io_manager": HandleIOManager(base_dir=str(datasets.storage_root)),
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
        },
    )


defs = build_definitions(load_datasets())
