"""`prepare_dask`: the prepare job on a Dask cluster (dagster-dask), one Dask task per step.

Where the cluster is comes from the run config's `execution: {config: {cluster: ...}}`; the
default is IMAGEDS_DASK_SCHEDULER (`tcp://host:8786`, an existing scheduler whose workers can
import this checkout and reach the same DAGSTER_HOME and storage_root), else a LocalCluster of
worker processes started for the run (IMAGEDS_MAX_CONCURRENT workers, or one per core).
Every worker runs its steps against the instance the run was launched from, so the instance
must be persistent (DAGSTER_HOME), and with workers on other machines it must be Postgres
(docs/operations.md, docs/scaling.md).
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_dask import dask_executor

from jobs.dataset_jobs import max_concurrent_default, prepare_selection
from ml.dataset_spec import DatasetsFile

DASK_SCHEDULER_ENV = "IMAGEDS_DASK_SCHEDULER"


def dask_cluster_config() -> dict:
    address = os.environ.get(DASK_SCHEDULER_ENV, "").strip()
    if address:
        return {"existing": {"address": address}}
    workers = max_concurrent_default() or os.cpu_count() or 1
    return {"local": {"n_workers": workers, "threads_per_worker": 1, "processes": True}}


def prepare_on_dask_job(datasets: DatasetsFile) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "prepare_dask", selection=prepare_selection(datasets), executor_def=dask_executor,
        config={"execution": {"config": {"cluster": dask_cluster_config()}}},
        description="The prepare job with every step run as a task on a Dask cluster "
                    f"({DASK_SCHEDULER_ENV} names an existing scheduler; else a local cluster).",
    )
