"""Progress of a long asset published as asset observations, next to the log lines.

`progress_for(context, total, what)` returns an ml.progress.Progress that logs done / total,
rate and ETA every few seconds through the run's log and, with each of those messages and once
at the end, records an AssetObservation on the asset (metadata `progress_of` and `progress`,
"done/total (percent), rate/s, ETA t", as text: the UI plots numbers, and progress plotted
beside an asset's quality figures only crowded them). The UI's asset page lists the
observations, so a long verification or resize shows how far it is without opening the logs.
"""

import gc

import dagster as dg

from assets.partitions import current_partition
from ml.progress import Progress, ProgressFactory, progress_text


def progress_observer(context: dg.AssetExecutionContext, what: str):
    """An `on_update(done, total, rate)` callback that logs an AssetObservation of the asset
    being materialized (for a partitioned asset, of the partition being materialized)."""
    key = context.asset_key
    partition = current_partition(context)

    def observe(done: int, total: int, rate: float) -> None:
        log_leaving_no_cycle(context, dg.AssetObservation(
            asset_key=key, partition=partition,
            metadata={"progress_of": what,
                      "progress": dg.MetadataValue.text(progress_text(done, total, rate))},
            description=f"{what}: {done}/{total}"))

    return observe


def log_leaving_no_cycle(context: dg.AssetExecutionContext, event: dg.AssetObservation) -> None:
    """`context.log_event(event)`, then the garbage it made collected at once.

    Dagster's SQL event storage inserts an asset event's key and, when the key is there
    already (every event after the first), catches the IntegrityError and updates
    (`_store_asset_event`); SQLAlchemy's handler holds that exception in a reference cycle
    with its traceback, whose frames lead back through every caller's. Logged from deep inside
    a step, the cycle kept the step's locals (a million rows' columns) alive after they
    returned, until the next full collection: 270 MB at the end of a 1M-sample resize, and
    a peak that moved with when the collector happened to run. With the collector held off
    while the event is logged, all it made is in the youngest generation, which is collected
    (cheaply: what one event allocated) before the caller goes on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        context.log_event(event)
    finally:
        if was_enabled:
            gc.enable()
        gc.collect(0)


def progress_for(context: dg.AssetExecutionContext, total: int, what: str,
                 interval: float = 5.0) -> Progress:
    """A Progress that logs to the run and publishes asset observations (throttled to
    one every `interval` seconds, plus one when it finishes). A partitioned (partitioned) asset's
    messages name the partition."""
    partition = current_partition(context)
    if partition is not None:
        what = f"{what} partition {partition}"
    return Progress(total, what, interval=interval, emit=context.log.info,
                    on_update=progress_observer(context, what))


def progress_factory_for(context: dg.AssetExecutionContext, prefix: str) -> ProgressFactory:
    """For ml functions that start their own Progress (one per split, say): each one logs to
    the run and publishes observations, its messages named `prefix what`."""
    return lambda total, what: progress_for(context, total, f"{prefix} {what}")
