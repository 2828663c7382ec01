"""The `resized` asset (stage_resize) and its check `safe_dimensions` (seed 004's rule)."""

import dagster as dg
import pandas as pd
import pyarrow.compute as pc

from assets.options import run_config_class, with_run_config
from assets.progress_observations import progress_for
from assets.partitions import current_partition, partition_folder, dataset_partitions
from ml.dataset_spec import DatasetSpec
from ml.errors import DatasetError
from ml.columns import text_column
from ml.resize import (Columns, ResizeOptions, check_safe_dimensions, output_names,
                       stage_resize)
from ml.sample_table import RESIZE_READS, for_resize, resized_columns, with_files
from ml.stored_table import StoredTable, TableEdit

CHECK_NAME = "safe_dimensions"

ResizeRunConfig = run_config_class(
    ResizeOptions, "ResizeRunConfig",
    "Overrides of the dataset's `resize:` section for one run (empty = use datasets.yaml).")


def resize_options(spec: DatasetSpec, run_config: dg.Config | None = None) -> ResizeOptions:
    return with_run_config(spec.resize, run_config, spec.where("resize"))


ITEM_SOURCE_COLUMNS = ("sample_id", "source_key", "path", "member")   # what items are made of


def resize_items(rows: pd.DataFrame) -> Columns:
    """The catalog rows as stage_resize's item columns (Arrow, one copy of each text: a frame
    of them beside would be a second). A sample's output goes to its member (HDF5) or source
    key, relative to the resized folder, without the extension."""
    member = text_column(rows["member"])
    names = pc.if_else(pc.equal(member, ""), text_column(rows["source_key"]), member)
    return {"sample_id": text_column(rows["sample_id"]), "path": text_column(rows["path"]),
            "member": member, "output_name": output_names(names)}


def build_resized_asset(spec: DatasetSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec.name, "resized"])

    @dg.asset(
        name="resized", key_prefix=[spec.name], group_name=spec.name,
        ins={"verified": dg.AssetIn(key=dg.AssetKey([spec.name, "verification_report"]))},
        io_manager_key="frame_io_manager", kinds={"pillow", "jpeg"},
        partitions_def=dataset_partitions(spec),
        check_specs=[dg.AssetCheckSpec(
            CHECK_NAME, asset=key, blocking=True,
            description="Output width and height divide by 2**pool_depth, so a network that halves "
                        "the image pool_depth times never floors an odd size (seed 004).")],
        description=f"{spec.name}'s images resized (stretch / letterbox / shorter side + crop) to "
                    "correct RGB, incrementally, on every core: the verified samples the dataset "
                    "uses. Its table is the verified one with the resized file, its size and what "
                    "was done, failures dropped (dropped_by 'resized'). Sources are never touched."
                    + (f" Runs per partition ({spec.partitions} partitions)."
                       if spec.partitions > 1 else ""),
    )
    def resized(context: dg.AssetExecutionContext, config: ResizeRunConfig,
                verified: StoredTable):
        opts = resize_options(spec, config)
        partition = current_partition(context)
        out_dir = partition_folder(spec.output_dir / "resized", partition)
        rows = verified.read(RESIZE_READS)     # not the table's other columns (memory)
        todo = for_resize(rows)
        dropped = int(rows["used"].sum()) - int(todo.sum())
        items = resize_items(rows.loc[todo, list(ITEM_SOURCE_COLUMNS)])
        rows = rows[["used", "status", "reason", "dropped_by"]]   # all resized_columns needs
        rspec = opts.output_spec()
        progress = progress_for(context, int(todo.sum()), f"{spec.name} resize")
        try:
            result = stage_resize(items, out_dir, rspec, workers=opts.workers or None,
                                  on_error=opts.on_error, progress=progress)
        except DatasetError as exc:
            raise dg.Failure(description=str(exc)) from None
        progress.finish()
        del items
        columns = pd.DataFrame(resized_columns(rows, todo, result.frame), copy=False)
        images = int(with_files(rows.assign(**columns)).sum())
        processed, unchanged, failed = result.processed, result.unchanged, result.failed
        written, seconds = result.bytes_written, result.seconds
        del rows, result                # only the edit's columns stay while the table is written
        context.log.info(f"resized {processed}, unchanged {unchanged}, failed {failed}, "
                         f"dropped before resizing {dropped}")
        yield dg.Output(TableEdit(verified, columns), metadata={
            "path": dg.MetadataValue.path(str(out_dir)),
            "images": images,
            "processed": processed, "unchanged": unchanged,
            "failed": failed, "dropped_bad_samples": dropped,
            "bytes_written": written, "seconds": round(seconds, 3),
            "images_per_s": round(processed / seconds, 1) if seconds else 0.0,
            "size": f"{rspec.width}x{rspec.height}", "mode": rspec.mode,
        })
        problems = check_safe_dimensions(rspec.width, rspec.height, opts.pool_depth)
        yield dg.AssetCheckResult(
            check_name=CHECK_NAME, asset_key=key, passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            description=("; ".join(problems) + "; set resize.round_to_safe: true to round "
                         "automatically") if problems else
                        f"{rspec.width}x{rspec.height} divides by 2**{opts.pool_depth}",
            metadata={"width": rspec.width, "height": rspec.height,
                      "pool_depth": opts.pool_depth},
        )

    return resized
