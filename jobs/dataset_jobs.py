"""The jobs: `prepare` (everything up to the packed formats), `reverify_images` (re-checks the
images against the current disk without rematerializing upstream assets) and its schedule, and
for a dataset declared with `partitions: N` its `<dataset>_partitions` job (catalog,
verification and resize, one run per partition, so a backfill fans out) and `<dataset>_combine`
job (splits and packed formats over every partition's output).

`prepare` runs on the multiprocess executor: independent steps (the datasets, the packed
formats) run in parallel, at most `max_concurrent` at a time. The default cap is every core, or
IMAGEDS_MAX_CONCURRENT when set; the Launchpad's run config
`execution: {config: {multiprocess: {max_concurrent: N}}}` overrides it for one run. Given
another executor (the Kubernetes code location, jobs/k8s.py, passes k8s_job_executor), the same
jobs run on it with the same cap (`execution: {config: {max_concurrent: N}}`).
"""

from __future__ import annotations

import os

import dagster as dg

from assets.partitions import partitioned_asset_keys
from jobs.training import TRAINING_STAGE
from ml.dataset_spec import DatasetsFile, DatasetSpec
from ml.errors import ConfigError

DEFAULT_REVERIFY_CRON = "0 3 * * *"   # daily at 03:00
MAX_CONCURRENT_ENV = "IMAGEDS_MAX_CONCURRENT"


def max_concurrent_default() -> int:
    """The prepare job's step cap: IMAGEDS_MAX_CONCURRENT, or 0 (Dagster: one per core)."""
    raw = os.environ.get(MAX_CONCURRENT_ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{MAX_CONCURRENT_ENV}={raw!r}: expected a whole number of steps >= 0 "
                          "(0 = one per core); unset it or fix the value")
    return value


def capped_execution_config(executor_def: dg.ExecutorDefinition | None = None) -> dict:
    """Run config that caps parallel steps at max_concurrent_default(): for the default
    executor under `multiprocess`, for a step-launching executor (k8s) at its top level, where
    0 means no cap and is left out."""
    cap = max_concurrent_default()
    if executor_def is None:
        return {"execution": {"config": {"multiprocess": {"max_concurrent": cap}}}}
    return {"execution": {"config": {"max_concurrent": cap} if cap else {}}}


def _partitioned_stage(spec: DatasetSpec) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*partitioned_asset_keys(spec))


def partitioned(datasets: DatasetsFile) -> list[DatasetSpec]:
    return [d for d in datasets.datasets if d.partitions > 1]


def prepare_selection(datasets: DatasetsFile) -> dg.AssetSelection:
    """Every asset but training, less each partitioned dataset's partition stage and what follows it
    (those run through `<dataset>_partitions` and `<dataset>_combine`)."""
    selection = dg.AssetSelection.all() - TRAINING_STAGE
    for spec in partitioned(datasets):
        selection = selection - _partitioned_stage(spec).downstream()
    return selection


def prepare_job(datasets: DatasetsFile, executor_def: dg.ExecutorDefinition | None = None
                ) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "prepare", selection=prepare_selection(datasets), executor_def=executor_def,
        config=capped_execution_config(executor_def),
        description="Catalog, verify, resize, split and pack every declared dataset "
                    "(everything but training: see the train job; a partitioned dataset's "
                    "partitions run through its <dataset>_partitions and <dataset>_combine jobs).",
    )


def partition_jobs(datasets: DatasetsFile, executor_def: dg.ExecutorDefinition | None = None
                   ) -> list[dg.UnresolvedAssetJobDefinition]:
    """For each partitioned dataset: `<name>_partitions` (catalog, verify and resize, one
    partition per run) and `<name>_combine` (the quality report, splits and packed formats
    over every partition)."""
    jobs = []
    for spec in partitioned(datasets):
        stage = _partitioned_stage(spec)
        jobs.append(dg.define_asset_job(
            f"{spec.name}_partitions", selection=stage, executor_def=executor_def,
            description=f"Catalog, verify and resize one partition of {spec.name} "
                        f"({spec.partitions} partitions); backfill it over every partition to fan "
                        "the work out, one run per partition."))
        jobs.append(dg.define_asset_job(
            f"{spec.name}_combine",
            selection=stage.downstream(include_self=False) - TRAINING_STAGE,
            executor_def=executor_def, config=capped_execution_config(executor_def),
            description=f"Quality report, splits and packed formats of {spec.name} over every "
                        f"partition (run after {spec.name}_partitions has covered every "
                        "partition)."))
    return jobs


def reverify_job(datasets: DatasetsFile, executor_def: dg.ExecutorDefinition | None = None
                 ) -> dg.UnresolvedAssetJobDefinition:
    keys = [dg.AssetKey([d.name, asset]) for d in datasets.datasets if d.partitions == 1
            for asset in ("verification_report", "quality_report")]
    return dg.define_asset_job(
        "reverify_images", selection=dg.AssetSelection.assets(*keys), executor_def=executor_def,
        description="Re-run existence/decode checks of every unpartitioned dataset against the "
                    "current disk, and its quality report; catalogs are loaded, not "
                    "rematerialized (a partitioned dataset "
                    "re-verifies through a backfill of its <dataset>_partitions job).",
    )


def reverify_schedule(job, cron: str | None = None) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="reverify_images_schedule", job=job,
        cron_schedule=cron or os.environ.get("IMAGEDS_REVERIFY_CRON", DEFAULT_REVERIFY_CRON),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-verifies every dataset's images (daily by default; set "
                    "IMAGEDS_REVERIFY_CRON to change the cron).",
    )
