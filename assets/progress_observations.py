"""Progress of a long asset published as asset observations, next to the log lines.

`progress_for(context, total, what)` returns an ml.progress.Progress that logs done / total,
rate and ETA every few seconds through the run's log and, with each of those messages and once
at the end, records an AssetObservation on the asset (metadata done, total, percent,
rate_per_s, eta_s). The UI's asset page lists the observations and plots their numbers, so a
long verification or resize shows how far it is without opening the run's logs.
"""

import dagster as dg

from assets.shards import current_shard
from ml.progress import Progress, ProgressFactory


def progress_observer(context: dg.AssetExecutionContext, what: str):
    """An `on_update(done, total, rate)` callback that logs an AssetObservation of the asset
    being materialized (for a sharded asset, of the shard being materialized)."""
    key = context.asset_key
    partition = current_shard(context)

    def observe(done: int, total: int, rate: float) -> None:
        left = max(0, total - done)
        metadata = {
            "progress_of": what, "done": int(done), "total": int(total),
            "percent": dg.MetadataValue.float(round(100.0 * done / total, 2) if total else 100.0),
            "rate_per_s": dg.MetadataValue.float(round(float(rate), 2)),
        }
        if total <= 0:               # total not known yet: no percent or ETA to plot
            del metadata["percent"]
        elif rate > 0:
            metadata["eta_s"] = dg.MetadataValue.float(round(left / rate, 1))
        context.log_event(dg.AssetObservation(
            asset_key=key, partition=partition, metadata=metadata,
            description=f"{what}: {done}/{total}"))

    return observe


def progress_for(context: dg.AssetExecutionContext, total: int, what: str,
                 interval: float = 5.0) -> Progress:
    """A Progress that logs to the run and publishes asset observations (throttled to
    one every `interval` seconds, plus one when it finishes). A partitioned (sharded) asset's
    messages name the shard."""
    shard = current_shard(context)
    if shard is not None:
        what = f"{what} shard {shard}"
    return Progress(total, what, interval=interval, emit=context.log.info,
                    on_update=progress_observer(context, what))


def progress_factory_for(context: dg.AssetExecutionContext, prefix: str) -> ProgressFactory:
    """For ml functions that start their own Progress (one per split, say): each one logs to
    the run and publishes observations, its messages named `prefix what`."""
    return lambda total, what: progress_for(context, total, f"{prefix} {what}")
