"""Postgres storage, against a real PostgreSQL server this test starts on a loopback port as an
unprivileged user: a job runs on an instance configured by config/dagster.postgres.yaml, and a
second instance (a fresh connection, as another process would open) reads its events back."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from tests.assets.helpers import definitions_for, make_folder_dataset
from tests.services import free_port, require_executable, require_module, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.service]

REPO = Path(__file__).resolve().parents[2]
PG_USER, PG_PASSWORD, PG_DB = "dagster", "s3cret-for-tests", "dagster"
UNPRIVILEGED = "nobody"


def as_postgres_user(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as `nobody` when the tests run as root."""
    return ["runuser", "-u", UNPRIVILEGED, "--", *args] if os.geteuid() == 0 else args


@pytest.fixture
def postgres_server():
    initdb = require_executable("initdb", apt_package="postgresql")
    pg_ctl = require_executable("pg_ctl", apt_package="postgresql")
    require_module("psycopg2", "dagster-postgres==0.29.27")
    # Not under pytest's tmp_path: its parents are private to root, and the server's user must
    # reach its data folder.
    root = Path(tempfile.mkdtemp(prefix="imageds-pg-"))
    data, pwfile = root / "data", root / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, UNPRIVILEGED)
        shutil.chown(pwfile, UNPRIVILEGED)
    port = free_port()
    try:
        subprocess.run(as_postgres_user([initdb, "-D", str(data), "-U", PG_USER,
                                         f"--pwfile={pwfile}", "-A", "scram-sha-256",
                                         "-E", "UTF8"]),
                       check=True, capture_output=True, text=True, timeout=120)
        subprocess.run(as_postgres_user([
            pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"]),
            check=True, capture_output=True, text=True, timeout=120)
        wait_for_port(port, timeout=30, what="postgres")
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER,
                                password=PG_PASSWORD, dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute(f"CREATE DATABASE {PG_DB}")
        conn.close()
        yield port
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "-w",
                                             "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def test_a_job_runs_on_postgres_storage_and_its_events_are_read_back(tmp_path, postgres_server,
                                                                     monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text() + "\n" +
                                       (REPO / "config" / "dagster.postgres.yaml").read_text())
    for name, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(postgres_server),
                        "DAGSTER_PG_DB": PG_DB, "DAGSTER_PG_USER": PG_USER,
                        "DAGSTER_PG_PASSWORD": PG_PASSWORD}.items():
        monkeypatch.setenv(name, value)
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=3)
    defs = definitions_for(tmp_path, [{"name": "pg", "kind": "image_folder",
                                       "source": {"root": str(folder)},
                                       "resize": {"width": 32, "height": 32, "workers": 1}}])

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = defs.resolve_job_def("prepare").execute_in_process(instance=instance)
        assert result.success
        run_id = result.run_id

    with dg.DagsterInstance.from_config(str(home)) as reader:   # a new connection reads it back
        assert type(reader.event_log_storage).__name__ == "PostgresEventLogStorage"
        run = reader.get_run_by_id(run_id)
        assert run is not None and run.job_name == "prepare" and run.is_success
        kinds = {r.event_log_entry.dagster_event.event_type
                 for r in reader.get_records_for_run(run_id, limit=10_000).records
                 if r.event_log_entry.dagster_event}
        assert {dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.ASSET_MATERIALIZATION,
                dg.DagsterEventType.ASSET_OBSERVATION} <= kinds
        for asset in ("catalog", "verification_report", "resized", "splits"):
            mats = reader.fetch_materializations(dg.AssetKey(["pg", asset]), limit=1).records
            assert mats and mats[0].run_id == run_id, asset
        meta = mats[0].asset_materialization.metadata
        assert meta["train_count"].value + meta["val_count"].value + meta["test_count"].value == 6
    assert not list(home.glob("**/*.db")), "no sqlite storage was used"
