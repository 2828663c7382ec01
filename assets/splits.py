"""The `splits` asset: train/val/test manifests (ml/splits.py), optional ImageFolder link tree,
class-balance histogram and a thumbnail grid in the asset's markdown."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assets.metadata import class_count_summary, image_markdown, save_png
from assets.options import run_config_class, with_run_config
from ml.atomic import atomic_path
from ml.dataset_spec import DatasetSpec
from ml.errors import DatasetError
from ml.quality.leakage import (MAX_MERGED_UNITS, cross_split_pairs,
                                duplicate_pairs, find_duplicates, keep_in_train,
                                label_conflicts, merged_units, without_clusters)
from ml.quality.report import issues_per_split
from ml.safe_paths import contained
from ml.sample_table import CHART_READS, SPLITS_READS, with_files
from ml.stored_table import StoredTable, TableEdit
from ml.splits import (SplitSpec, assign_splits, build_link_tree, class_balance_png, class_counts,
                       coverage_warnings, manifest_targets, preview_rows, split_counts, split_units,
                       thumbnail_grid, write_class_counts)

COVERAGE_CHECK = "splits_cover_every_class"
LEAKAGE_CHECK = "no_leakage_across_splits"
LEAKAGE_TABLE = "splits_leakage.parquet"     # in the dataset's output folder
SHOWN_PAIRS = 20                             # crossing pairs named in the check's description

SplitRunConfig = run_config_class(
    SplitSpec, "SplitRunConfig",
    "Overrides of the dataset's `splits:` section for one run (empty = use datasets.yaml).")


def split_spec_for(spec: DatasetSpec, config: dg.Config | None = None) -> SplitSpec:
    """The dataset's split options (defaults < datasets.yaml < run config), checked; a bad value
    is a ConfigError naming the dataset."""
    return with_run_config(spec.splits, config, spec.where("splits"))


def write_leakage_table(crossing: pd.DataFrame, output_dir: Path) -> Path:
    """The duplicate pairs found across splits (before any keep_in_train), as Parquet."""
    path = contained(output_dir, LEAKAGE_TABLE, what="leakage table")
    with atomic_path(path) as tmp:
        crossing.to_parquet(tmp, index=False)
    return path


def leakage_check(key: dg.AssetKey, policy: str, crossing: pd.DataFrame, dropped: int,
                  pairs: int, table) -> dg.AssetCheckResult:
    """The verdict: nothing crossed; or what crossed, failed (fail), reported (warn) or
    resolved by taking the val/test copies out (keep_in_train)."""
    first = crossing.head(SHOWN_PAIRS)
    shown = "; ".join(f"{a} ({sa}) ~ {b} ({sb}), {kind} at {d} bits" for a, sa, b, sb, kind, d
                      in zip(first["source_key_a"], first["split_a"], first["source_key_b"],
                             first["split_b"], first["kind"], first["distance"]))
    if crossing.empty:
        text = f"no duplicate across splits ({pairs} duplicate pair(s), each kept in one split)"
    elif policy == "keep_in_train":
        text = (f"{len(crossing)} duplicate pair(s) crossed splits; their {dropped} val/test "
                f"copies were taken out of the splits (leakage: keep_in_train): {shown}")
    else:
        text = (f"{len(crossing)} duplicate pair(s) across splits: {shown}; full list: {table}. "
                "Set splits.group_duplicates: true to keep each group in one split, or "
                "splits.leakage: keep_in_train")
    return dg.AssetCheckResult(
        check_name=LEAKAGE_CHECK, asset_key=key,
        passed=crossing.empty or policy == "keep_in_train",
        severity=dg.AssetCheckSeverity.ERROR if policy == "fail" else dg.AssetCheckSeverity.WARN,
        description=text,
        metadata={"pairs_across_splits": len(crossing), "dropped": dropped,
                  "table": dg.MetadataValue.path(str(table))})


def build_splits_asset(spec: DatasetSpec) -> dg.AssetsDefinition:
    out_dir = spec.output_dir / "splits"

    key = dg.AssetKey([spec.name, "splits"])

    @dg.asset(
        name="splits", key_prefix=[spec.name], group_name=spec.name,
        ins={"resized": dg.AssetIn(key=dg.AssetKey([spec.name, "resized"]))},
        io_manager_key="frame_io_manager", kinds={"parquet"},
        check_specs=[dg.AssetCheckSpec(
            COVERAGE_CHECK, asset=key, blocking=False,
            description="Every split is at least splits.min_split_size samples, and every class "
                        "has samples in every split (unless identities are kept whole); a "
                        "warning, not a stop."),
            dg.AssetCheckSpec(
            LEAKAGE_CHECK, asset=key, blocking=True,
            description="No exact or near-duplicate image is in two splits (a test score on "
                        "images also trained on is a wrong number); by splits.leakage a "
                        "crossing fails (stops packing), warns, or is resolved by keeping the "
                        "group in train.")],
        description=f"{spec.name}'s resized samples assigned to splits by a stable, group-aware "
                    "hash; one Parquet manifest per split.",
    )
    def splits(context: dg.AssetExecutionContext, config: SplitRunConfig, resized: StoredTable):
        try:
            sspec = split_spec_for(spec, config)
        except DatasetError as exc:
            raise dg.Failure(description=str(exc)) from None
        table = resized.read(SPLITS_READS)    # not the table's other columns (memory)
        kept = with_files(table)
        frame = table if kept.all() else table.loc[kept].reset_index(drop=True)
        del table
        if frame.empty:
            raise dg.Failure(description=f"{spec.name}: no resized images to split; check the "
                                         "resized asset's failures and the verification report")
        quality = spec.quality
        base_units = split_units(frame, sspec)
        pairs, clusters = without_clusters(base_units,
                                           duplicate_pairs(find_duplicates(frame, quality)))
        if len(clusters):
            context.log.warning(
                f"{spec.name} splits: {len(clusters)} near-duplicate pair(s) chain into clusters "
                f"of more than {MAX_MERGED_UNITS} split units: similar images rather than "
                "copies; not treated as duplicates (lower quality.near_duplicate_distance to "
                "split them)")
        units = merged_units(base_units, pairs) if sspec.group_duplicates else base_units
        frame = frame.assign(split=assign_splits(frame, sspec, units))
        crossing = cross_split_pairs(frame, pairs)
        conflicts = label_conflicts(frame, pairs, base_units)
        dropped = np.zeros(len(frame), dtype=bool)
        if len(crossing) and sspec.leakage == "keep_in_train":
            dropped = keep_in_train(frame, pairs, sspec.names)
            frame = frame.loc[~dropped].reset_index(drop=True)
            kept[np.flatnonzero(kept)[dropped]] = False
        leakage_path = write_leakage_table(crossing, spec.output_dir)
        manifests = manifest_targets(frame["split"], out_dir, sspec)
        split_table = TableEdit(resized, frame[["split"]], keep=None if kept.all() else kept,
                                also=manifests)     # the IO manager publishes all together
        unit_count, pair_count, cluster_count = len(units.names), len(pairs), len(clusters)
        frame = frame[[c for c in frame.columns if c in CHART_READS]]
        del base_units, units, pairs, clusters     # what the charts do not read, before the
        split_table.start_also()      # manifests are encoded on a thread while they are drawn
        per_class = class_counts(frame)
        counts = split_counts(per_class)
        hist = class_balance_png(counts)
        sample = preview_rows(frame)
        grid = thumbnail_grid(sample["file"].tolist(),
                              [f"{s}:{l}" for s, l in zip(sample["split"], sample["label"])])
        paths = dict(zip(sspec.names, manifests))
        sizes = frame["split"].value_counts()
        meta: dict = {
            "path": dg.MetadataValue.path(str(out_dir)),
            **{f"{name}_count": int(sizes.get(name, 0)) for name in sspec.names},
            **{f"{name}_manifest": dg.MetadataValue.path(str(p)) for name, p in paths.items()},
            "counts_per_split_and_class": dg.MetadataValue.json(
                {split: class_count_summary(per) for split, per in counts.items()}),
            "class_counts_table": dg.MetadataValue.path(str(write_class_counts(per_class, out_dir))),
            "split_units": unit_count,
            "duplicate_pairs": pair_count,
            "similar_cluster_pairs": cluster_count,
            "duplicate_pairs_across_splits": len(crossing),
            "dropped_for_leakage": int(dropped.sum()),
            "label_conflicts": len(conflicts),
            "issues_per_split": dg.MetadataValue.json(
                issues_per_split(frame, quality).set_index("split").to_dict("index")),
            "leakage_table": dg.MetadataValue.path(str(leakage_path)),
            "seed": sspec.seed, "ratios": str(list(sspec.ratios)),
        }
        if sspec.link_tree:
            tree = out_dir / "imagefolder"
            links = build_link_tree(frame, tree)
            meta.update({"imagefolder": dg.MetadataValue.path(str(tree)),
                         "hard_links": links["link"], "copies": links["copy"]})
        meta["class_balance_png"] = save_png(hist, out_dir / "class_balance.png")
        meta["thumbnails_png"] = save_png(grid, out_dir / "thumbnails.png")
        meta["preview"] = dg.MetadataValue.md(
            f"### {spec.name} splits\n\n{image_markdown(hist, 'class balance')}\n\n"
            f"{image_markdown(grid, 'sample thumbnails')}")
        del frame                             # only the edit's column stays while it is written
        yield dg.Output(split_table, metadata=meta)
        problems = coverage_warnings(counts, sspec)
        for problem in problems:
            context.log.warning(f"{spec.name} splits: {problem}")
        yield dg.AssetCheckResult(
            check_name=COVERAGE_CHECK, asset_key=key, passed=not problems,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(problems) or "every split and every class has samples")
        if len(conflicts):
            context.log.warning(f"{spec.name} splits: {len(conflicts)} duplicate pair(s) carry "
                                "different labels (label noise); the quality report lists the "
                                "duplicate pairs with their files")
        yield leakage_check(key, sspec.leakage, crossing, int(dropped.sum()), pair_count,
                            leakage_path)

    return splits
