"""The webserver's GraphQL API: launch the prepare job for one dataset's assets with
dagster-graphql's client, poll the run to SUCCESS, and read its materializations and check results
back through GraphQL."""

from __future__ import annotations

import time

import pytest
from dagster import DagsterRunStatus

from tests.ui.conftest import DATASET_ASSETS, LOCATION, SMALL_DATASETS

pytestmark = [pytest.mark.slow]

DATASET = "pairs"           # the run materializes this dataset's assets only
RUN_TIMEOUT_S = 600
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

RUN_EVENTS = """
query RunEvents($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on PythonError { message }
    ... on Run {
      status
      tags { key value }
      assetMaterializations {
        runId
        assetKey { path }
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on BoolMetadataEntry { boolValue }
          ... on PathMetadataEntry { path }
        }
      }
      eventConnection(limit: 5000) {
        events {
          __typename
          ... on AssetCheckEvaluationEvent {
            evaluation { checkName success assetKey { path } }
          }
        }
      }
    }
  }
}
"""


def metadata_values(entries: list[dict]) -> dict:
    """{label: value} of GraphQL metadata entries (int, bool and path entries)."""
    values = {}
    for e in entries:
        for field in ("intValue", "boolValue", "path"):
            if field in e:
                values[e["label"]] = e[field]
    return values


def wait_for_run(client, run_id: str, timeout: float) -> DagsterRunStatus:
    deadline = time.monotonic() + timeout
    status = client.get_run_status(run_id)
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(2)
        status = client.get_run_status(run_id)
    return status


def test_graphql_client_launches_a_selection_and_reads_back_materializations(dagster_dev):
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_dev.port)
    selected = {(DATASET, asset) for asset in DATASET_ASSETS}
    run_id = client.submit_job_execution(
        "prepare", repository_location_name=LOCATION, asset_selection=[list(k) for k in selected],
        tags={"imageds/launched_by": "graphql-test"})

    status = wait_for_run(client, run_id, RUN_TIMEOUT_S)
    assert status == DagsterRunStatus.SUCCESS, (
        f"{status} (or timed out): {dagster_dev.run_errors(run_id)}\n{dagster_dev.log_tail()}")

    run = dagster_dev.graphql(RUN_EVENTS, {"runId": run_id})["runOrError"]
    assert run["__typename"] == "Run", run
    assert run["status"] == "SUCCESS"
    assert {"key": "imageds/launched_by", "value": "graphql-test"} in run["tags"]

    mats = {tuple(m["assetKey"]["path"]): metadata_values(m["metadataEntries"])
            for m in run["assetMaterializations"]}
    assert set(mats) == selected                   # the selection, and nothing of other datasets
    assert all(m["runId"] == run_id for m in run["assetMaterializations"])

    images = SMALL_DATASETS[DATASET]
    report = mats[(DATASET, "verification_report")]
    assert report["total_images_checked"] == images
    assert report["missing_count"] == report["corrupt_count"] == 0
    assert report["passed"] is True
    assert report["path"].startswith(str(dagster_dev.outputs / DATASET))
    splits = mats[(DATASET, "splits")]
    assert splits["train_count"] + splits["val_count"] + splits["test_count"] == images

    checks = [e["evaluation"] for e in run["eventConnection"]["events"]
              if e["__typename"] == "AssetCheckEvaluationEvent"]
    verification = [(c["assetKey"]["path"], c["success"]) for c in checks
                    if c["checkName"] == "images_within_thresholds"]
    assert verification == [([DATASET, "verification_report"], True)], checks
