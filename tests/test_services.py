"""tests/services.py and the conftest hook: a missing service skips on a developer's machine and
fails in CI (IMAGEDS_REQUIRE_SERVICES=1), so CI can never pass with a service test skipped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.services import find_executable, free_port, kill_process_group, start_process_group

REPO = Path(__file__).resolve().parents[1]

SUITE = textwrap.dedent('''
    import pytest
    from tests.services import require_executable

    @pytest.mark.service
    def test_needs_a_missing_program():
        require_executable("imageds-no-such-program", apt_package="imageds-no-such-package")

    @pytest.mark.service
    def test_needs_python():
        assert require_executable("python3", apt_package="python3")

    def test_ordinary_skip():
        pytest.skip("not a service")
''')


def run_suite(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_suite.py").write_text(SUITE)
    # The project's conftest hook, loaded as a plugin into a pytest run over the tiny suite.
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    service: needs a service\n")
    env = {k: v for k, v in os.environ.items() if k != "IMAGEDS_REQUIRE_SERVICES"}
    env["PYTHONPATH"] = str(REPO)
    if require is not None:
        env["IMAGEDS_REQUIRE_SERVICES"] = require
    return subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_missing_service_skips_with_the_package_to_install(tmp_path):
    proc = run_suite(tmp_path, require=None)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 2 skipped" in proc.stdout
    assert "apt-get install -y imageds-no-such-package" in proc.stdout


def test_missing_service_fails_when_services_are_required(tmp_path):
    proc = run_suite(tmp_path, require="1")
    assert proc.returncode == 1, proc.stdout
    assert "1 failed, 1 passed, 1 skipped" in proc.stdout
    assert "FAILED" in proc.stdout and "test_needs_a_missing_program" in proc.stdout
    assert "IMAGEDS_REQUIRE_SERVICES=1" in proc.stdout
    assert "apt-get install -y imageds-no-such-package" in proc.stdout


def test_free_port_is_bindable_and_process_group_is_killed_with_its_children():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    # A shell that starts a child and waits: killing the group must end both.
    proc = start_process_group(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE,
                               text=True)
    child = int(proc.stdout.readline())
    kill_process_group(proc, grace=5)
    assert proc.poll() is not None
    deadline = time.monotonic() + 10      # SIGKILL is delivered asynchronously
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(child)


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (an orphan may wait for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_find_executable_searches_postgresql_bin_folders():
    path = find_executable("pg_ctl")
    if path is None:
        pytest.skip("PostgreSQL is not installed here")
    assert os.access(path, os.X_OK)
