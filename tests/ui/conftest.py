"""A real `dagster dev` (webserver + daemon) on 127.0.0.1, shared by the UI and GraphQL tests.

It serves two small datasets (an image folder and before/after pairs, tests/assets/helpers.py)
declared in a datasets.yaml under a temporary folder (IMAGEDS_DATASETS), with a temporary
DAGSTER_HOME holding a copy of the project's dagster.yaml, exactly as `make ui` runs it. Its log
is saved as test-artifacts/ui/dagster-dev.log; the whole process group is killed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.assets.helpers import make_folder_dataset, make_pairs_dataset
from tests.conftest import golden_root
from tests.services import free_port, kill_process_group, start_process_group, wait_for_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
LOCATION = "definitions"                # workspace.yaml's python_module code location
STARTUP_TIMEOUT_S = 300                 # 2 busy cores: imports (torch) take a while
# Per dataset: what the UI must show after a run (images in the source folder).
SMALL_DATASETS = {"animals": 18, "pairs": 12}
# A dataset with a model whose training lasts long enough to be watched live (its epochs are many
# and tiny: one step each on the golden store's frames); the quality gate is off, as a demo of
# watching, not of learning.
TRAINED_DATASET = "seq"
WATCHED_EPOCHS = 60
DATASET_ASSETS = ("catalog", "verification_report", "resized", "splits")


@dataclass
class DagsterDev:
    """A running `dagster dev`: where it listens and where its runs write."""

    url: str
    port: int
    home: Path
    outputs: Path
    log: Path
    proc: subprocess.Popen

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        """POST one GraphQL query to the webserver; the `data` of the answer."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read())
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def run_errors(self, run_id: str) -> str:
        """The run's status and its error events (step and run failures), for assertion messages."""
        run = self.graphql(RUN_ERRORS, {"runId": run_id})["runOrError"]
        if "eventConnection" not in run:
            return f"run {run_id}: {run}"
        errors = [f"{e['__typename']}: {e.get('message', '')} {e['error']['message']}"
                  for e in run["eventConnection"]["events"] if e.get("error")]
        return f"run {run_id} {run['status']}:\n" + "\n".join(errors)


RUN_ERRORS = """
query RunErrors($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on PythonError { message }
  ... on Run { status eventConnection(limit: 5000) { events { __typename
    ... on MessageEvent { message } ... on ErrorEvent { error { message } } } } } } }
"""

LOCATION_STATUS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def write_small_datasets(root: Path) -> Path:
    """datasets.yaml over two small generated datasets, outputs under root/outputs."""
    folder = make_folder_dataset(root / "src" / "animals")
    pairs = make_pairs_dataset(root / "src" / "pairs", n=SMALL_DATASETS["pairs"] // 2)
    doc = {"storage_root": str(root / "outputs"), "datasets": [
        {"name": "animals", "kind": "image_folder", "source": {"root": str(folder)},
         "description": "Three classes of generated images (UI test)",
         "resize": {"mode": "letterbox", "width": 64, "height": 64, "workers": 1}},
        {"name": "pairs", "kind": "before_after", "source": {"root": str(pairs)},
         "description": "Generated before/after pairs (UI test)",
         "resize": {"mode": "stretch", "width": 64, "height": 48, "workers": 1}},
        {"name": TRAINED_DATASET, "kind": "h5_store",
         "source": {"file": str(golden_root() / "hdf5" / "sequences.h5")},
         "description": "The golden frame sequences, trained on while the UI watches (UI test)",
         "resize": {"mode": "shorter_side_crop", "width": 32, "height": 32, "workers": 1},
         "formats": {"h5_store": {}},
         "train": {"task": "contrastive", "gate_margin": -1.0,
                   "set": {"epochs": WATCHED_EPOCHS, "batch_size": 8, "image_size": 32,
                           "knn_k": 3}}},
    ]}
    path = root / "datasets.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def wait_for_code_location(dev: DagsterDev, timeout: float) -> None:
    """Wait until the webserver has loaded the code location; fail with its load error."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if dev.proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {dev.proc.returncode}:\n{dev.log_tail()}")
        try:
            entries = dev.graphql(LOCATION_STATUS)["workspaceOrError"].get("locationEntries", [])
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
            time.sleep(1)
            continue
        for entry in entries:
            if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise RuntimeError(f"code location failed to load: {loaded['message']}")
                return
        last = entries
        time.sleep(1)
    raise TimeoutError(f"code location {LOCATION!r} not loaded after {timeout:.0f} s "
                       f"(last answer: {last}):\n{dev.log_tail()}")


def start_dagster_dev(root: Path) -> DagsterDev:
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = dict(os.environ, DAGSTER_HOME=str(home), DAGSTER_DISABLE_TELEMETRY="1",
               IMAGEDS_ROOT=str(REPO), IMAGEDS_DATASETS=str(write_small_datasets(root)))
    port = free_port()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)      # no stale screenshots from an earlier run
    ARTIFACTS.mkdir(parents=True)
    log = ARTIFACTS / "dagster-dev.log"
    dagster = Path(sys.executable).with_name("dagster")
    with open(log, "wb") as out:
        proc = start_process_group(
            [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml",
             "--live-data-poll-rate", "1000"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    dev = DagsterDev(url=f"http://127.0.0.1:{port}", port=port, home=home,
                     outputs=root / "outputs", log=log, proc=proc)
    try:
        wait_for_port(port, STARTUP_TIMEOUT_S, proc=proc, what="dagster dev")
        wait_for_code_location(dev, STARTUP_TIMEOUT_S)
    except BaseException:
        kill_process_group(proc)
        raise
    return dev


@pytest.fixture(scope="session")
def dagster_dev(tmp_path_factory) -> DagsterDev:
    dev = start_dagster_dev(tmp_path_factory.mktemp("dagster_dev"))
    try:
        yield dev
    finally:
        kill_process_group(dev.proc)
