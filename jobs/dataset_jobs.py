"""The jobs: `prepare` (everything up to the packed formats), `reverify_images` (re-checks the
images against the current disk without rematerializing upstream assets) and its schedule, and
for a dataset declared with `shards: N` its `<dataset>_shards` job (catalog, verification and
resize, one run per shard, so a backfill fans out) and `<dataset>_combine` job (splits and packed
formats over every shard's output).

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

from assets.shards import sharded_asset_keys
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


def _shard_stage(spec: DatasetSpec) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*sharded_asset_keys(spec))


def sharded(datasets: DatasetsFile) -> list[DatasetSpec]:
    return [d for d in datasets.datasets if d.shards > 1]


def prepare_selection(datasets: DatasetsFile) -> dg.AssetSelection:
    """Every asset but training, less each sharded dataset's shard stage and what follows it
    (those run through `<dataset>_shards` and `<dataset>_combine`)."""
    selection = dg.AssetSelection.all() - TRAINING_STAGE
    for spec in sharded(datasets):
        selection = selection - _shard_stage(spec).downstream()
    return selection


def prepare_job(datasets: DatasetsFile, executor_def: dg.ExecutorDefinition | None = None
                ) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "prepare", selection=prepare_selection(datasets), executor_def=executor_def,
        config=capped_execution_config(executor_def),
        description="Catalog, verify, resize, split and pack every declared dataset "
                    "(everything but training: see the train job; a sharded dataset's shards "
                    "run through its <dataset>_shards and <dataset>_combine jobs).",
    )


def shard_jobs(datasets: DatasetsFile, executor_def: dg.ExecutorDefinition | None = None
               ) -> list[dg.UnresolvedAssetJobDefinition]:
    """For each sharded dataset: `<name>_shards` (partitioned: catalog, verify and resize one
    shard per run) and `<name>_combine` (splits and packed formats over every shard)."""
    jobs = []
    for spec in sharded(datasets):
        stage = _shard_stage(spec)
        jobs.append(dg.define_asset_job(
            f"{spec.name}_shards", selection=stage, executor_def=executor_def,
            description=f"Catalog, verify and resize one shard of {spec.name} ({spec.shards} "
                        "shards); backfill it over every shard to fan the work out, one run "
                        "per shard."))
        jobs.append(dg.define_asset_job(
            f"{spec.name}_combine",
            selection=stage.downstream(include_self=False) - TRAINING_STAGE,
            executor_def=executor_def, config=capped_execution_config(executor_def),
            description=f"Split and pack {spec.name} over every shard's resized images "
                        f"(run after {spec.name}_shards has covered every shard)."))
    return jobs


def reverify_job(datasets: DatasetsFile, executor_def: dg.ExecutorDefinition | None = None
                 ) -> dg.UnresolvedAssetJobDefinition:
    keys = [dg.AssetKey([d.name, asset]) for d in datasets.datasets if d.shards == 1
            for asset in ("verification_report", "quality_report")]
    return dg.define_asset_job(
        "reverify_images", selection=dg.AssetSelection.assets(*keys), executor_def=executor_def,
        description="Re-run existence/decode checks of every unsharded dataset against the "
                    "current disk, and its quality report; catalogs are loaded, not "
                    "rematerialized (a sharded dataset "
                    "re-verifies through a backfill of its <dataset>_shards job).",
    )


def reverify_schedule(job, cron: str | None = None) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="reverify_images_schedule", job=job,
        cron_schedule=cron or os.environ.get("IMAGEDS_REVERIFY_CRON", DEFAULT_REVERIFY_CRON),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-verifies every dataset's images (daily by default; set "
                    "IMAGEDS_REVERIFY_CRON to change the cron).",
    )
