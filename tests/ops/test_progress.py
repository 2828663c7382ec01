"""Long assets publish their progress as asset observations while they materialize."""

from __future__ import annotations

import dagster as dg

from tests.assets.helpers import definitions_for, make_folder_dataset, materialize_all


def test_materialization_records_progress_observations(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=5)
    defs = definitions_for(tmp_path, [{"name": "obs", "kind": "image_folder",
                                       "source": {"root": str(folder)},
                                       "resize": {"width": 32, "height": 32, "workers": 1}}])
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_all(defs, instance=instance)
    assert result.success
    work = {"catalog": "obs catalog headers", "verification_report": "obs verify",
            "resized": "obs resize"}
    for asset, what in work.items():
        key = dg.AssetKey(["obs", asset])
        records = instance.fetch_observations(key, limit=100).records
        assert records, f"no progress observation for {asset}"
        metadata = records[0].asset_observation.metadata
        meta = {k: v.value for k, v in metadata.items()}
        assert meta["progress"].startswith("10/10 (100.0%), "), (asset, meta)
        assert meta["progress_of"] == what
        assert not any(isinstance(v, (dg.IntMetadataValue, dg.FloatMetadataValue))
                       for v in metadata.values())          # nothing to plot beside the figures
