"""`<dataset>/augmented_samples`: a PNG grid of augmented training samples with their occlusion
masks (seed 002's "save sample images for debugging"), for datasets packed as RecordIO.

The picture is computed by ml.sample_grid from the recordio asset's handle (loaded through the
handle IO manager), saved atomically under `<output_dir>/augmented_samples/` and shown inline in
the asset's markdown. The same seed gives the same picture.
"""

import dagster as dg

from assets.metadata import image_markdown, save_png
from assets.options import run_config_class, with_run_config
from ml.dataset_spec import DatasetSpec
from ml.errors import DatasetError
from ml.formats.handles import RecordIOHandle
from ml.sample_grid import SampleGridOptions, augmented_sample_grid

AugmentedSamplesConfig = run_config_class(
    SampleGridOptions, "AugmentedSamplesConfig",
    "Overrides for one run (empty = the defaults: 16 samples, 4 columns, seed 0, mask 0.5).")


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
        try:
            opts = with_run_config(SampleGridOptions(), config, spec.where("augmented_samples"))
            grid = augmented_sample_grid(recordio, **opts.model_dump())
        except DatasetError as exc:
            raise dg.Failure(description=str(exc)) from None
        masked = sum(share > 0 for share in grid.occluded)
        context.log.info(f"{spec.name}: {len(grid.indices)} augmented samples, {masked} masked")
        return dg.MaterializeResult(metadata={
            "path": save_png(grid.png, out_path),
            "samples": len(grid.indices), "masked_samples": masked,
            "size": f"{grid.size[0]}x{grid.size[1]}", "seed": opts.seed,
            "preview": dg.MetadataValue.md(
                f"### {spec.name}: augmented training samples\n\nEach cell: the sample as "
                "training sees it, then its occlusion mask (white visible, black occluded).\n\n"
                f"{image_markdown(grid.png, 'augmented samples')}"),
        })

    return [augmented_samples]
