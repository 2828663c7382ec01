"""The `splits` asset: train/val/test manifests (ml/splits.py), optional ImageFolder link tree,
class-balance histogram and a thumbnail grid in the asset's markdown."""

from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.metadata import class_count_summary, image_markdown, save_png
from assets.options import merged_options
from ml.dataset_spec import DatasetSpec
from ml.errors import ConfigError, DatasetError
from ml.sample_table import with_files
from ml.splits import (SplitSpec, assign_splits, build_link_tree, class_balance_png,
                       coverage_warnings, preview_rows, split_counts, thumbnail_grid,
                       write_class_counts, write_manifests)

COVERAGE_CHECK = "splits_cover_every_class"

SPLIT_DEFAULTS = {"ratios": [0.80, 0.12, 0.08], "names": ["train", "val", "test"], "seed": 0,
                  "group_identities": False, "link_tree": False, "min_split_size": 1}


class SplitRunConfig(dg.Config):
    """Overrides of the dataset's `splits:` section for one run (empty = use datasets.yaml)."""

    ratios: Optional[list[float]] = Field(default=None, description="One ratio per split, summing to 1 (default 0.80/0.12/0.08)")
    seed: Optional[int] = Field(default=None, description="Seed of the hash that assigns groups to splits")
    group_identities: Optional[bool] = Field(default=None, description="Keep every identity inside one split (face verification)")
    link_tree: Optional[bool] = Field(default=None, description="Also build an ImageFolder tree of hard links")
    min_split_size: Optional[int] = Field(default=None, description="Warn when a split has fewer samples")


def split_spec_for(spec: DatasetSpec, config: SplitRunConfig | None = None) -> SplitSpec:
    """The dataset's split options (defaults < datasets.yaml < run config), checked; a bad value
    is a ConfigError naming the dataset."""
    try:
        return SplitSpec.from_options(merged_options(SPLIT_DEFAULTS, spec.splits, config,
                                                     f"{spec.name}.splits"))
    except DatasetError as exc:
        raise ConfigError(f"dataset {spec.name!r}: {exc}") from None


def build_splits_asset(spec: DatasetSpec) -> dg.AssetsDefinition:
    out_dir = spec.output_dir / "splits"
    split_spec_for(spec)       # a bad splits: section fails when definitions load

    key = dg.AssetKey([spec.name, "splits"])

    @dg.asset(
        name="splits", key_prefix=[spec.name], group_name=spec.name,
        ins={"resized": dg.AssetIn(key=dg.AssetKey([spec.name, "resized"]))},
        io_manager_key="frame_io_manager", kinds={"parquet"},
        check_specs=[dg.AssetCheckSpec(
            COVERAGE_CHECK, asset=key, blocking=False,
            description="Every split is at least splits.min_split_size samples, and every class "
                        "has samples in every split (unless identities are kept whole); a "
                        "warning, not a stop.")],
        description=f"{spec.name}'s resized samples assigned to splits by a stable, group-aware "
                    "hash; one Parquet manifest per split.",
    )
    def splits(context: dg.AssetExecutionContext, config: SplitRunConfig, resized: pd.DataFrame):
        try:
            sspec = split_spec_for(spec, config)
        except DatasetError as exc:
            raise dg.Failure(description=str(exc)) from None
        kept = with_files(resized)
        frame = resized if kept.all() else resized.loc[kept].reset_index(drop=True)
        if frame.empty:
            raise dg.Failure(description=f"{spec.name}: no resized images to split; check the "
                                         "resized asset's failures and the verification report")
        frame = frame.assign(split=assign_splits(frame, sspec))
        paths = write_manifests(frame, out_dir, sspec)
        counts = split_counts(frame)
        meta: dict = {
            "path": dg.MetadataValue.path(str(out_dir)),
            **{f"{name}_count": int((frame["split"] == name).sum()) for name in sspec.names},
            **{f"{name}_manifest": dg.MetadataValue.path(str(p)) for name, p in paths.items()},
            "counts_per_split_and_class": dg.MetadataValue.json(
                {split: class_count_summary(per) for split, per in counts.items()}),
            "class_counts_table": dg.MetadataValue.path(str(write_class_counts(frame, out_dir))),
            "groups": int(frame["group_id"].nunique()),
            "seed": sspec.seed, "ratios": str(list(sspec.ratios)),
        }
        if sspec.link_tree:
            tree = out_dir / "imagefolder"
            links = build_link_tree(frame, tree)
            meta.update({"imagefolder": dg.MetadataValue.path(str(tree)),
                         "hard_links": links["link"], "copies": links["copy"]})
        hist = class_balance_png(counts)
        meta["class_balance_png"] = save_png(hist, out_dir / "class_balance.png")
        sample = preview_rows(frame)
        grid = thumbnail_grid(sample["file"].tolist(),
                              [f"{s}:{l}" for s, l in zip(sample["split"], sample["label"])])
        meta["thumbnails_png"] = save_png(grid, out_dir / "thumbnails.png")
        meta["preview"] = dg.MetadataValue.md(
            f"### {spec.name} splits\n\n{image_markdown(hist, 'class balance')}\n\n"
            f"{image_markdown(grid, 'sample thumbnails')}")
        yield dg.Output(frame, metadata=meta)
        problems = coverage_warnings(counts, sspec)
        for problem in problems:
            context.log.warning(f"{spec.name} splits: {problem}")
        yield dg.AssetCheckResult(
            check_name=COVERAGE_CHECK, asset_key=key, passed=not problems,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(problems) or "every split and every class has samples")

    return splits
