"""Automation: the stage-folder sensor starts prepare when new images arrive (and only then),
and the run-failure sensor logs which job, run and step failed, and why."""

from __future__ import annotations

import dagster as dg

from jobs.sensors import failure_summary, run_failure_summary_sensor
from tests.assets.helpers import definitions_for, make_folder_dataset, write_jpeg


def test_new_images_in_the_stage_folder_start_prepare_for_that_dataset_only(tmp_path):
    stage = make_folder_dataset(tmp_path / "stage", classes=2, per_class=2)
    other = make_folder_dataset(tmp_path / "other", classes=1, per_class=2)
    big = make_folder_dataset(tmp_path / "big", classes=1, per_class=2)
    defs = definitions_for(tmp_path, [
        {"name": "incoming", "kind": "image_folder", "source": {"root": str(stage)}},
        {"name": "settled", "kind": "image_folder", "source": {"root": str(other)}},
        # partitioned: prepare holds none of its assets (its catalog runs per partition, by backfill)
        {"name": "parts", "kind": "image_folder", "source": {"root": str(big)}, "partitions": 2}])
    sensor = defs.resolve_sensor_def("new_images_sensor")
    assert sensor.job_name == "prepare"

    def tick(cursor):
        return sensor.evaluate_tick(dg.build_sensor_context(cursor=cursor, definitions=defs))

    first = tick(None)
    assert not first.run_requests and first.cursor          # the first look only records
    assert not tick(first.cursor).run_requests               # unchanged folders: nothing
    (stage / "class_0" / "00.jpg").unlink()
    removed = tick(first.cursor)
    assert not removed.run_requests                          # removals alone: not new images
    (stage / "class_0" / "notes.txt").write_text("not an image")
    assert not tick(removed.cursor).run_requests
    write_jpeg(stage / "class_1" / "new.jpg")
    write_jpeg(stage / "class_2" / "first.jpg")              # a new class folder too
    write_jpeg(big / "class_0" / "new.jpg")                  # never an empty-selection request
    arrived = tick(removed.cursor)
    assert len(arrived.run_requests) == 1
    request = arrived.run_requests[0]
    assert request.tags["imageds/dataset"] == "incoming"
    assert {k.to_user_string() for k in request.asset_selection} == {
        "incoming/catalog", "incoming/verification_report", "incoming/quality_report", "incoming/resized", "incoming/splits"}
    assert not tick(arrived.cursor).run_requests             # the cursor moved on


def failure_context(result: dg.ExecuteInProcessResult, instance) -> dg.RunFailureSensorContext:
    """The run-failure sensor's context for a run that failed."""
    assert not result.success
    return dg.build_run_status_sensor_context(
        sensor_name="run_failure_summary_sensor", dagster_instance=instance,
        dagster_run=result.dagster_run, dagster_event=result.get_run_failure_event(),
    ).for_run_failure()


def test_run_failure_sensor_summarizes_job_run_step_and_error(tmp_path, capfd):
    defs = definitions_for(tmp_path, [{"name": "gone", "kind": "image_folder",
                                       "source": {"root": str(tmp_path / "no_such_folder")}}])
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("prepare").execute_in_process(instance=instance,
                                                                raise_on_error=False)
    context = failure_context(result, instance)
    summary = failure_summary(context)
    assert f"run {result.run_id} of job 'prepare' failed" in summary
    assert "step gone__catalog: dataset 'gone': source.root" in summary   # the sentence, no class
    assert "no_such_folder does not exist" in summary
    assert defs.resolve_sensor_def("run_failure_summary_sensor").default_status == \
        dg.DefaultSensorStatus.RUNNING
    capfd.readouterr()
    run_failure_summary_sensor(context)
    logged = capfd.readouterr().err
    assert "ERROR" in logged and "step gone__catalog:" in logged and result.run_id in logged


def test_run_failure_summary_quotes_the_failed_check_and_its_report(tmp_path):
    root = make_folder_dataset(tmp_path / "src", classes=2, per_class=5)
    defs = definitions_for(tmp_path, [{"name": "animals", "kind": "image_folder",
                                       "source": {"root": str(root)}}])
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("prepare").execute_in_process(instance=instance).success
    (root / "class_0" / "00.jpg").rename(tmp_path / "moved_away.jpg")      # 1 of 10: 10%
    result = defs.resolve_job_def("reverify_images").execute_in_process(
        instance=instance, raise_on_error=False)
    summary = failure_summary(failure_context(result, instance))
    assert "check animals/verification_report" in summary
    assert "1 missing" in summary and "ratio 10.0000% > 1.0000%" in summary
    assert "missing_images_report.json" in summary                        # the report's path
