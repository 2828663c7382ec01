"""Helpers for tests that need an external service (a browser, PostgreSQL, Redis, a dask cluster).

How to use them in a test module:

    import pytest
    from tests.services import free_port, require_executable

    pytestmark = [pytest.mark.slow, pytest.mark.service]

    def test_postgres_storage(tmp_path):
        initdb = require_executable("initdb", apt_package="postgresql")
        port = free_port()
        ...

- Mark every such test ``@pytest.mark.service`` (registered in pyproject.toml).
- ``require_executable(name, apt_package)`` returns the executable's absolute path. When it is
  missing the test is skipped with a reason that says which Debian package to install.
- ``require_module(name, pip_package)`` does the same for an importable Python module.
- CI (``.ci/run``) sets ``IMAGEDS_REQUIRE_SERVICES=1``; then the hook in tests/conftest.py turns the
  skip of any test marked ``service`` into a failure, so a missing service can never pass silently.
  A developer's machine without the package just sees the skip and its reason.
- ``free_port()`` returns a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0);
  ``wait_for_port(port, timeout)`` waits until something listens there.
- ``start_process_group(args, **popen_kwargs)`` starts a server (dagster dev, postgres,
  a dask scheduler) as the leader of its own process group, with SIGINT and SIGTERM
  at their defaults even when the test run ignores them (a backgrounded CI job);
  ``kill_process_group(proc)`` ends it and every child it spawned. Call it in a ``finally``.

PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not on PATH on Debian; they live in
/usr/lib/postgresql/<version>/bin, which ``require_executable`` also searches.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

REQUIRE_SERVICES_ENV = "IMAGEDS_REQUIRE_SERVICES"

# Folders searched after PATH: Debian keeps PostgreSQL's server programs out of PATH.
_EXTRA_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/sbin", "/usr/local/sbin")


def services_required() -> bool:
    """True when a missing service must fail the run (CI) rather than skip the test."""
    return os.environ.get(REQUIRE_SERVICES_ENV, "").strip() not in ("", "0", "false", "no")


def _extra_dirs() -> list[str]:
    dirs: list[str] = []
    for pattern in _EXTRA_BIN_GLOBS:
        # Newest PostgreSQL first when several versions are installed.
        dirs.extend(sorted(glob.glob(pattern), reverse=True))
    return dirs


def find_executable(name: str) -> str | None:
    """Absolute path of `name` on PATH or in the extra system folders, or None."""
    found = shutil.which(name)
    if found:
        return found
    for folder in _extra_dirs():
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_executable(name: str, apt_package: str) -> str:
    """Path of executable `name`; skips when absent (fails under IMAGEDS_REQUIRE_SERVICES=1)."""
    path = find_executable(name)
    if path is None:
        pytest.skip(f"`{name}` is not installed: run `apt-get install -y {apt_package}` "
                    f"(CI installs it through .ci/run)")
    return path


def require_module(module: str, pip_package: str) -> None:
    """Skip the test when Python module `module` is missing (a failure under CI's variable)."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"Python module `{module}` is not installed: run "
                    f"`.venv/bin/pip install -c constraints.txt {pip_package}` "
                    "(or `make bootstrap`)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that no one listened on when this returned."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None,
                  what: str = "service") -> None:
    """Wait until something accepts connections on 127.0.0.1:port; fail if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening on "
                               f"port {port}")
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def _default_signal_handlers() -> None:
    # A backgrounded shell job ignores SIGINT, and children inherit that; dagster maps SIGTERM to
    # its SIGINT handler, so an ignored SIGINT would make it ignore SIGTERM too.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_process_group(args: list[str], **popen_kwargs) -> subprocess.Popen:
    """Popen(args) as the leader of a new process group; end it with kill_process_group."""
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_default_signal_handlers,
                            **popen_kwargs)


def kill_process_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group of `proc` (from start_process_group), then SIGKILL what is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Children may outlive the leader; kill whatever is left of the group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=grace)
