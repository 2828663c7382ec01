"""The `catalog` asset: one row per declared sample (ml/catalog.py), stored as Parquet."""

import dagster as dg
import pandas as pd

from assets.metadata import class_count_summary
from assets.progress_observations import progress_factory_for
from assets.partitions import current_partition, dataset_partitions
from ml.catalog import build_catalog, class_counts, summarize_sizes
from ml.dataset_spec import DatasetSpec
from ml.errors import DatasetError


def build_catalog_asset(spec: DatasetSpec) -> dg.AssetsDefinition:
    @dg.asset(
        name="catalog", key_prefix=[spec.name], group_name=spec.name,
        io_manager_key="frame_io_manager", kinds={"pandas", "parquet"},
        partitions_def=dataset_partitions(spec),
        description=f"Every sample declared by {spec.name}'s {spec.kind} source: ids, paths, "
                    "labels, groups, sizes and status (no pixels decoded)."
                    + (f" Built per partition ({spec.partitions} partitions): each run keeps and "
                       "opens only its own samples." if spec.partitions > 1 else ""),
    )
    def catalog(context: dg.AssetExecutionContext) -> dg.Output[pd.DataFrame]:
        try:
            result = build_catalog(spec, partition=current_partition(context),
                                   progress_factory=progress_factory_for(
                                       context, f"{spec.name} catalog"))
        except DatasetError as exc:
            raise dg.Failure(description=str(exc)) from None
        frame = result.frame
        counts = result.counts()
        meta: dict = {**counts, **summarize_sizes(frame), "source_kind": spec.kind,
                      "classes": dg.MetadataValue.json(class_count_summary(class_counts(frame)))}
        if result.invalid:
            context.log.warning(f"{len(result.invalid)} identifier(s) escape the images folder "
                                f"and are skipped, e.g. {result.invalid[:3]}")
            meta["invalid_identifiers"] = dg.MetadataValue.json(
                [{"identifier": k, "why": w} for k, w in result.invalid[:100]])
        return dg.Output(frame, metadata=meta)

    return catalog
