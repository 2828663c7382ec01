"""The jobs: `prepare` (everything up to the packed formats), `reverify_images` (re-checks the
images against the current disk without rematerializing upstream assets) and its schedule."""

from __future__ import annotations

import os

import dagster as dg

from jobs.training import TRAINING_STAGE
from ml.dataset_spec import DatasetsFile

DEFAULT_REVERIFY_CRON = "0 3 * * *"   # daily at 03:00


def prepare_job() -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        "prepare", selection=dg.AssetSelection.all() - TRAINING_STAGE,
        description="Catalog, verify, resize, split and pack every declared dataset "
                    "(everything but training: see the train job).",
    )


def reverify_job(datasets: DatasetsFile) -> dg.UnresolvedAssetJobDefinition:
    keys = [dg.AssetKey([d.name, "verification_report"]) for d in datasets.datasets]
    return dg.define_asset_job(
        "reverify_images", selection=dg.AssetSelection.assets(*keys),
        description="Re-run existence/decode checks of every dataset against the current disk; "
                    "catalogs are loaded, not rematerialized.",
    )


def reverify_schedule(job, cron: str | None = None) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="reverify_images_schedule", job=job,
        cron_schedule=cron or os.environ.get("IMAGEDS_REVERIFY_CRON", DEFAULT_REVERIFY_CRON),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-verifies every dataset's images (daily by default; set "
                    "IMAGEDS_REVERIFY_CRON to change the cron).",
    )
