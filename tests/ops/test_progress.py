"""Long assets publish their progress as asset observations while they materialize."""

from __future__ import annotations

import weakref

import dagster as dg

from assets.progress_observations import progress_for

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


class _Held:
    """Stands for a step's million-row columns: something only its locals refer to."""


def test_progress_observations_leave_nothing_holding_the_callers_locals():
    """Dagster's event storage catches an IntegrityError on every asset event after the first,
    in a reference cycle whose traceback's frames reach back through the caller: logged deep
    inside a step, the observation kept that step's locals alive until a full collection
    (270 MB after a 1M-sample resize). Once the work returns, its locals must be gone."""
    seen = {}

    @dg.asset
    def counted(context) -> int:
        def work() -> None:
            held = _Held()
            seen["held"] = weakref.ref(held)
            progress = progress_for(context, 3, "work", interval=0.0)
            for _ in range(3):
                progress.advance()
            progress.finish()

        work()
        seen["alive after return"] = seen["held"]() is not None
        return 1

    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([counted], instance=instance).success
    assert len(instance.fetch_observations(counted.key, limit=10).records) == 4
    assert seen["alive after return"] is False
