"""`<dataset>/augmented_samples`: a PNG grid of augmented training samples with their occlusion
masks (seed 002's "save sample images for debugging"), for datasets packed as RecordIO.

The picture is computed by ml.sample_grid from the recordio asset's handle (loaded through the
handle IO manager), saved atomically under `<output_dir>/augmented_samples/` and shown inline in
the asset's markdown. The same seed gives the same picture.
"""

from typing import Optional

import dagster as dg
from pydantic import Field

from assets.metadata import image_markdown, save_png
from assets.options import merged_options
from ml.dataset_spec import DatasetSpec
from ml.errors import DatasetError
from ml.formats.handles import RecordIOHandle

SAMPLE_GRID_DEFAULTS = {"count": 16, "columns": 4, "seed": 0, "mask_prob": 0.5, "flip_prob": 0.5}


class AugmentedSamplesConfig(dg.Config):
    """Overrides for one run (empty = the defaults: 16 samples, 4 columns, seed 0, mask 0.5)."""

    count: Optional[int] = Field(default=None, description="Samples to show (default 16)")
    columns: Optional[int] = Field(default=None, description="Cells per row (default 4)")
    seed: Optional[int] = Field(default=None, description="Seed of the samples and every random draw")
    mask_prob: Optional[float] = Field(default=None, description="Probability of the medical-mask occlusion (default 0.5)")
    flip_prob: Optional[float] = Field(default=None, description="Probability of the horizontal flip (default 0.5)")


def build_augmented_samples_assets(spec: DatasetSpec) -> list[dg.AssetsDefinition]:
    """The asset for a dataset that packs RecordIO; none otherwise."""
    if "recordio" not in spec.formats:
        return []
    out_path = spec.output_dir / "augmented_samples" / "augmented_samples.png"

    @dg.asset(
        name="augmented_samples", key_prefix=[spec.name], group_name=spec.name,
        ins={"recordio": dg.AssetIn(key=dg.AssetKey([spec.name, "recordio"]))},
        kinds={"png"},
        description=f"A grid of {spec.name}'s training samples after augmentation (Augmenter + "
                    "face_train_transform), each beside its occlusion mask.",
    )
    def augmented_samples(context: dg.AssetExecutionContext, config: AugmentedSamplesConfig,
                          recordio: RecordIOHandle) -> dg.MaterializeResult:
        from ml.sample_grid import augmented_sample_grid   # torch: not at definitions load

        opts = merged_options(SAMPLE_GRID_DEFAULTS, {}, config, f"{spec.name}.augmented_samples")
        try:
            grid = augmented_sample_grid(recordio, **opts)
        except DatasetError as exc:
            raise dg.Failure(description=str(exc)) from None
        masked = sum(share > 0 for share in grid.occluded)
        context.log.info(f"{spec.name}: {len(grid.indices)} augmented samples, {masked} masked")
        return dg.MaterializeResult(metadata={
            "path": save_png(grid.png, out_path),
            "samples": len(grid.indices), "masked_samples": masked,
            "size": f"{grid.size[0]}x{grid.size[1]}", "seed": opts["seed"],
            "preview": dg.MetadataValue.md(
                f"### {spec.name}: augmented training samples\n\nEach cell: the sample as "
                "training sees it, then its occlusion mask (white visible, black occluded).\n\n"
                f"{image_markdown(grid.png, 'augmented samples')}"),
        })

    return [augmented_samples]
