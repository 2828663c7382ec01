"""The asset factory: one asset group per declared dataset, key-prefixed by its name."""

from __future__ import annotations

import dagster as dg

from assets.augmented_samples import build_augmented_samples_assets
from assets.catalog import build_catalog_asset
from assets.packing import build_packing_assets
from assets.quality import build_quality_asset
from assets.resize import build_resized_asset
from assets.splits import build_splits_asset
from assets.training import build_training_assets
from assets.verification import build_verification_asset
from ml.dataset_spec import DatasetSpec


def build_dataset_assets(spec: DatasetSpec) -> list[dg.AssetsDefinition]:
    return [
        build_catalog_asset(spec),
        build_verification_asset(spec),
        *build_quality_asset(spec),
        build_resized_asset(spec),
        build_splits_asset(spec),
        *build_packing_assets(spec),
        *build_augmented_samples_assets(spec),
        *build_training_assets(spec),
    ]
