"""The `<dataset>/quality_report` asset: what verification's decode pass measured, read as
cleanvision's issues (dark, light, blurry, low_information, odd_aspect_ratio, odd_size,
grayscale) and duplicates (ml/quality). Counts per issue as numbers the UI plots over runs, a
Parquet table of the flagged images with their scores, per-class counts, duplicate pairs, and a
gallery per issue. The reverify job re-runs it with the verification. For a partitioned dataset
it is not partitioned: it reads every partition's verification rows (the IO manager
concatenates them, as for splits), so odd sizes and duplicates are judged over the whole
dataset; the `<dataset>_combine` job builds it."""


import dagster as dg
import pandas as pd

from assets.metadata import image_markdown
from ml.dataset_spec import DatasetSpec
from ml.quality.report import QUALITY_FOLDER, issue_galleries, quality_report, write_tables

INLINE_GALLERIES = 3         # galleries inlined in the metadata (the rest by path): <= 64 KB


def build_quality_asset(spec: DatasetSpec) -> list[dg.AssetsDefinition]:
    """The dataset's quality report (of every partition together when it is partitioned)."""
    folder = spec.output_dir / QUALITY_FOLDER

    @dg.asset(
        name="quality_report", key_prefix=[spec.name], group_name=spec.name,
        ins={"verified": dg.AssetIn(key=dg.AssetKey([spec.name, "verification_report"]))},
        kinds={"parquet", "png"}, tags={"imageds/stage": "verify"},
        description=f"{spec.name}'s images read for cleanvision's issues and duplicates, from the "
                    "signals verification (level decode) recorded: counts, flagged images with "
                    "scores, per-class counts, duplicate pairs and a gallery per issue.",
    )
    def quality_report_asset(context: dg.AssetExecutionContext,
                             verified: pd.DataFrame) -> dg.MaterializeResult:
        report = quality_report(verified, spec.quality)
        if report.measured == 0:
            context.log.warning(f"{spec.name}: no image has quality signals; run verification "
                                "at level decode (verify.level: decode, verify.signals: true)")
        tables = write_tables(report, folder)
        galleries = issue_galleries(report, folder, spec.name)
        summary = ", ".join(f"{k} {v}" for k, v in report.counts.items() if v) or "no issue"
        context.log.info(f"{spec.name} quality: {report.measured} images read; {summary}")
        inline = "\n\n".join(image_markdown(p.read_bytes(), name)
                             for name, p in list(galleries.items())[:INLINE_GALLERIES])
        return dg.MaterializeResult(metadata={
            "images_measured": report.measured,
            **{issue: count for issue, count in report.counts.items()},
            "flagged_table": dg.MetadataValue.path(str(tables["flagged"])),
            "per_class_table": dg.MetadataValue.path(str(tables["per_class"])),
            "duplicate_pairs_table": dg.MetadataValue.path(str(tables["duplicate_pairs"])),
            **{f"{name}_gallery": dg.MetadataValue.path(str(p)) for name, p in galleries.items()},
            "galleries": dg.MetadataValue.md(f"### {spec.name}: quality\n\n{summary}\n\n{inline}"),
        })

    return [quality_report_asset]
