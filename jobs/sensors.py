"""A sensor that starts `reverify_images` when a dataset's images folder changes.

It fingerprints folders by their directory entries' mtimes (a directory's mtime changes when a
file in it is added, removed or renamed), so it never stats individual images. The first
evaluation only records the fingerprint; a later change requests one re-verification run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import dagster as dg

from ml.dataset_spec import DatasetsFile

WATCHED_OPTION = {"image_folder": "root", "before_after": "root", "coco": "images_dir",
                  "hybrid": "images_dir", "h5_store": "file", "recordio": "path"}


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
    watched = {d.name: d.source_path(WATCHED_OPTION[d.kind], required=False)
               for d in datasets.datasets}

    @dg.sensor(name="images_changed_sensor", job=job, minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Re-verifies images when a dataset's images folder changes.")
    def images_changed(context: dg.SensorEvaluationContext):
        prints = {name: folder_fingerprint(p) for name, p in watched.items()
                  if p is not None and p.exists()}
        current = hashlib.sha1(repr(sorted(prints.items())).encode()).hexdigest()
        previous = context.cursor
        context.update_cursor(current)
        if previous is None or previous == current:
            return dg.SkipReason("no images folder changed" if previous else
                                 "recorded the images folders' fingerprints")
        return dg.RunRequest(run_key=current, tags={"imageds/trigger": "images_changed"})

    return images_changed
