"""The `verification_report` asset and its blocking check `images_within_thresholds`.

The asset checks every catalogued image against the current disk (ml/verify/), writes seed
000's JSON report (plus our fields) and stores per-sample results as Parquet for downstream
assets, which exclude the bad samples. Re-verification (jobs/) re-runs only this asset.
A partitioned dataset verifies one partition per run (assets/partitions.py), each with its own
report and its own check (thresholds apply to the partition).
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets.metadata import bad_samples_table, image_markdown
from assets.options import run_config_class, with_run_config
from assets.progress_observations import progress_for
from assets.partitions import current_partition, dataset_partitions, partition_path
from ml.corrupt_gallery import corrupt_gallery
from ml.dataset_spec import DatasetSpec
from ml.errors import ConfigError, DatasetError
from ml.safe_paths import check_output_file
from ml.sample_table import VERIFY_READS, verified_columns
from ml.stored_table import StoredTable, TableEdit
from ml.verify import (VerifyConfig, is_report, listing_ahead, resolve_report_path,
                       verify_catalog, write_report)

CHECK_NAME = "images_within_thresholds"


VerifyRunConfig = run_config_class(
    VerifyConfig, "VerifyRunConfig",
    "Overrides of the dataset's `verify:` section for one run (empty = use datasets.yaml).")
CORRUPT_GALLERY = "corrupt_images.png"   # under <output>/assets/: what of each corrupt file decodes


def verify_config_for(spec: DatasetSpec, run_config: dg.Config | None = None) -> VerifyConfig:
    return with_run_config(spec.verify, run_config, spec.where("verify"))


def report_path_for(spec: DatasetSpec, config: VerifyConfig, partition: str | None = None) -> Path:
    """Where the JSON report goes: inside the dataset's output folder, never among its images
    and never over a file that is not an earlier report (ml/safe_paths.check_output_file)."""
    path = partition_path(resolve_report_path(config.report_path, spec.output_dir), partition)
    try:
        return check_output_file(path, output_dir=spec.output_dir,
                                 protected=[spec.images_location],
                                 what=f"dataset {spec.name!r}: verify.report_path", ours=is_report)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (verify.report_path is {config.report_path!r})") from None


def build_verification_asset(spec: DatasetSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, "verification_report"])
    report_path_for(spec, verify_config_for(spec))     # a bad verify: section fails at load

    @dg.asset(
        name="verification_report", key_prefix=[spec.name], group_name=spec.name,
        ins={"catalog": dg.AssetIn(key=dg.AssetKey([spec.name, "catalog"]))},
        io_manager_key="frame_io_manager", kinds={"pandas", "json"},
        partitions_def=dataset_partitions(spec),
        check_specs=[dg.AssetCheckSpec(
            CHECK_NAME, asset=key, blocking=True,
            description="Missing + corrupt images within max_missing_ratio and max_missing_count "
                        "over the samples the dataset uses; a failure stops everything downstream.")],
        description=f"Existence and decode checks of {spec.name}'s images against the current disk, "
                    "with seed 000's JSON report.",
    )
    def verification_report(context: dg.AssetExecutionContext, config: VerifyRunConfig,
                            catalog: StoredTable):
        try:
            vconf = verify_config_for(spec, config)
        except DatasetError as exc:
            raise dg.Failure(description=str(exc)) from None
        partition = current_partition(context)
        try:
            report_path = report_path_for(spec, vconf, partition)
        except DatasetError as exc:
            raise dg.Failure(description=str(exc)) from None
        images_dir = str(spec.images_location)
        with listing_ahead(images_dir, vconf) as listings:     # listed while the catalog is read
            rows = catalog.read(VERIFY_READS)      # not the catalog's other columns (memory)
            progress = progress_for(context, len(rows), f"{spec.name} verify")
            try:
                result = verify_catalog(rows, images_dir=images_dir, config=vconf,
                                        checksum_db=spec.output_dir / "assets" / "checksums.sqlite",
                                        progress=progress, log=context.log.info,
                                        listings=listings)
            except DatasetError as exc:
                raise dg.Failure(description=str(exc)) from None
        write_report(result.report, report_path)
        r = result.report
        used = r["used_subset"]
        whole = r["whole_label_file"]
        findings = pd.DataFrame(verified_columns(rows, result.per_sample), copy=False)
        table = rows.assign(**findings)
        gallery_path = partition_path(spec.output_dir / "assets" / CORRUPT_GALLERY, partition)
        gallery = corrupt_gallery(table, gallery_path,
                                  f"{spec.name}: corrupt images, what still decodes")
        if gallery is None:
            gallery_path.unlink(missing_ok=True)         # an earlier run's picture is stale
        bad_samples = bad_samples_table(table)
        passed, message = bool(result.passed), result.message
        del rows, table, result          # only the edit's columns stay while the table is written
        yield dg.Output(TableEdit(catalog, findings), metadata={
            "path": dg.MetadataValue.path(str(report_path)),
            "bad_samples": bad_samples,
            **({"corrupt_gallery": dg.MetadataValue.md(image_markdown(
                gallery.read_bytes(), "corrupt images")),
                "corrupt_gallery_path": dg.MetadataValue.path(str(gallery))} if gallery else {}),
            "total_images_checked": r["total_images_checked"],
            "missing_count": r["missing_count"],
            "corrupt_count": r["corrupt_count"],
            "invalid_count": r["invalid_count"],
            "missing_ratio": float(r["missing_ratio"]),
            "bad_ratio_used": float(used["bad_ratio"]),
            "bad_ratio_whole_file": float(whole["bad_ratio"]),
            "whole_file_total": whole["total"],
            "check_level": r["check_level"],
            "passed": passed,
        })
        yield dg.AssetCheckResult(
            check_name=CHECK_NAME, asset_key=key, passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{message}; report: {report_path}",
            metadata={"missing_count": r["missing_count"], "corrupt_count": r["corrupt_count"],
                      "invalid_count": r["invalid_count"],
                      "bad_ratio_used": float(used["bad_ratio"]),
                      "report": dg.MetadataValue.path(str(report_path))},
        )

    return verification_report
