"""The images-changed sensor requests re-verification only after a folder really changes."""

from __future__ import annotations

import dagster as dg

from tests.assets.helpers import definitions_for, make_folder_dataset, write_jpeg


def test_sensor_requests_reverification_when_images_arrive(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=2)
    defs = definitions_for(tmp_path, [{"name": "a", "kind": "image_folder",
                                       "source": {"root": str(folder)}}])
    sensor = defs.resolve_sensor_def("images_changed_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    ctx = dg.build_sensor_context(cursor=None)
    first = sensor.evaluate_tick(ctx)
    assert not first.run_requests and first.cursor
    unchanged = sensor.evaluate_tick(dg.build_sensor_context(cursor=first.cursor))
    assert not unchanged.run_requests
    write_jpeg(folder / "class_1" / "new.jpg")
    changed = sensor.evaluate_tick(dg.build_sensor_context(cursor=first.cursor))
    assert len(changed.run_requests) == 1
    assert changed.run_requests[0].job_name in (None, "reverify_images")
