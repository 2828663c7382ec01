"""The sensors.

- `images_changed_sensor` starts `reverify_images` when a dataset's images folder changes. It
  fingerprints folders by their directory entries' mtimes (a directory's mtime changes when a
  file in it is added, removed or renamed), so it never stats individual images. The first
  evaluation only records the fingerprint; a later change requests one re-verification run.
- `new_images_sensor` watches the stage folders (each dataset's images folder, or its source
  file) and starts the `prepare` job for a dataset whose folder holds image files it did not
  hold at the last evaluation. Stopped by default: turn it on where images are dropped into a
  staging folder (docs/operations.md).
- `run_failure_summary_sensor` logs one clear summary of every failed run: job, run id, the
  failed steps and their error messages.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import dagster as dg

from jobs.dataset_jobs import prepare_selection
from ml.dataset_spec import DatasetsFile
from ml.sources.record import IMAGE_EXTENSIONS


def watched_folders(datasets: DatasetsFile, unpartitioned_only: bool = False) -> dict[str, Path]:
    """Each dataset's images folder (or source file) that the sensors watch."""
    return {d.name: d.images_location
            for d in datasets.datasets if not (unpartitioned_only and d.partitions > 1)}


def folder_fingerprint(path: Path) -> str:
    """sha1 over (relative dir, mtime_ns) of every directory under `path` (or the file itself)."""
    h = hashlib.sha1()
    if path.is_file():
        st = path.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()
    for root, dirs, _files in os.walk(path):
        dirs.sort()
        h.update(f"{os.path.relpath(root, path)}:{os.stat(root).st_mtime_ns}\n".encode())
    return h.hexdigest()


def images_changed_sensor(datasets: DatasetsFile, job) -> dg.SensorDefinition:
    # partitioned datasets re-verify through their <name>_partitions backfill, not the reverify job
    watched = watched_folders(datasets, unpartitioned_only=True)

    @dg.sensor(name="images_changed_sensor", job=job, minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Re-verifies images when a dataset's images folder changes.")
    def images_changed(context: dg.SensorEvaluationContext):
        prints = {name: folder_fingerprint(p) for name, p in watched.items()
                  if p.exists()}
        current = hashlib.sha1(repr(sorted(prints.items())).encode()).hexdigest()
        previous = context.cursor
        context.update_cursor(current)
        if previous is None or previous == current:
            return dg.SkipReason("no images folder changed" if previous else
                                 "recorded the images folders' fingerprints")
        return dg.RunRequest(run_key=current, tags={"imageds/trigger": "images_changed"})

    return images_changed


def stage_listing(path: Path) -> tuple[int, str]:
    """(number of image files, sha1 of their sorted relative paths) of a stage folder; for a
    source that is one file (an HDF5 store, a RecordIO pack), (its size, sha1 of size:mtime).
    Directory entries are listed without a stat per image."""
    if path.is_file():
        return path.stat().st_size, folder_fingerprint(path)
    names: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        rel = os.path.relpath(root, path)
        names.extend(os.path.join(rel, f) for f in files
                     if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    names.sort()
    return len(names), hashlib.sha1("\n".join(names).encode()).hexdigest()


def has_new_images(previous: list | None, current: tuple[int, str]) -> bool:
    """New images arrived: the listing changed and did not shrink (removals alone are for
    re-verification, not for preparing)."""
    return previous is not None and previous[1] != current[1] and current[0] >= previous[0]


def new_images_sensor(datasets: DatasetsFile, job, assets) -> dg.SensorDefinition:
    """Starts `job` (prepare) over the assets of each dataset whose stage folder got new images."""
    prepare = prepare_selection(datasets)
    # a partitioned dataset's catalog is partitioned: new images reach it through a backfill of
    # <name>_partitions, not through prepare (which holds none of its assets)
    watched = watched_folders(datasets, unpartitioned_only=True)
    keys = {name: sorted((prepare & dg.AssetSelection.groups(name)).resolve(assets))
            for name in watched}

    @dg.sensor(name="new_images_sensor", job=job, minimum_interval_seconds=120,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description="Starts the prepare job for a dataset whose images folder (stage "
                           "folder) holds new image files since the last evaluation.")
    def new_images(context: dg.SensorEvaluationContext):
        previous = json.loads(context.cursor) if context.cursor else {}
        current = {name: stage_listing(p) for name, p in watched.items()
                   if p.exists()}
        context.update_cursor(json.dumps(current, sort_keys=True))
        arrived = [name for name, listing in current.items()
                   if has_new_images(previous.get(name), listing)]
        if not arrived:
            return dg.SkipReason("no new images" if previous else
                                 "recorded the stage folders' listings")
        requests = []
        for name in arrived:
            count, digest = current[name]
            context.log.info(f"{name}: {count - previous[name][0]:+d} image files since the "
                             f"last evaluation ({count} now); starting prepare")
            requests.append(dg.RunRequest(
                run_key=f"{name}:{digest}", asset_selection=keys[name],
                tags={"imageds/trigger": "new_images", "imageds/dataset": name}))
        return requests

    return new_images


def error_sentence(error, fallback: str | None) -> str:
    """An error's own message: a dg.Failure's description as is, another exception as
    `ClassName: message` (the module path dropped)."""
    while error is not None and error.cause is not None and error.cls_name.startswith("Dagster") \
            and error.cls_name.endswith("ExecutionError"):
        error = error.cause          # framework wrappers around the user's exception
    if error is None:
        return fallback or "no message"
    head, _, tail = error.message.strip().partition(": ")
    name = head.rsplit(".", 1)[-1]
    if not tail:
        return error.message.strip()
    return tail if name == "Failure" else f"{name}: {tail}"


def failure_summary(context: dg.RunFailureSensorContext) -> str:
    """One paragraph a person can act on: which job and run failed, at which steps, and why
    (a failed check's own sentence included)."""
    run = context.dagster_run
    steps = context.get_step_failure_events()
    lines = [f"run {run.run_id} of job {run.job_name!r} failed"]
    if steps:
        for event in steps:
            error = event.event_specific_data.error if event.event_specific_data else None
            lines.append(f"  step {event.step_key}: {error_sentence(error, event.message)}")
    else:
        lines.append(f"  before any step failed: {context.failure_event.message}")
    lines += [f"  check {e.asset_key.to_user_string()} {e.check_name} failed: "
              f"{e.description or 'no description'}" for e in failed_checks(context)]
    lines.append(f"  logs: the run's page in the UI (/runs/{run.run_id})")
    return "\n".join(lines)


def failed_checks(context: dg.RunFailureSensorContext) -> list:
    """The run's failed asset-check evaluations, each with the check's own sentence (a
    blocking check's step error only says that one failed)."""
    records = context.instance.all_logs(context.dagster_run.run_id,
                                        of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [r.dagster_event.event_specific_data for r in records if r.dagster_event]
    return [e for e in evaluations if not e.passed]


@dg.run_failure_sensor(name="run_failure_summary_sensor",
                       default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Logs a summary of every failed run: job, run id, failed "
                                   "steps and their error messages.")
def run_failure_summary_sensor(context: dg.RunFailureSensorContext):
    context.log.error(failure_summary(context))
