"""Shared fixtures. The golden reference files are part of the project (tests/golden/, written
by the real tools through `make golden`; its README names each tool and version), so `make
test` needs nothing beside the checkout; IMAGEDS_GOLDEN points the tests at another copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.services import REQUIRE_SERVICES_ENV, services_required

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


def golden_root() -> Path:
    override = os.environ.get("IMAGEDS_GOLDEN")
    root = Path(override) if override else REPO / "tests" / "golden"
    if not (root / "README.md").exists():
        raise RuntimeError(
            f"golden reference files not found at {root}: they are part of the project "
            "(tests/golden/); restore them from git, or set IMAGEDS_GOLDEN to a copy"
        )
    return root


@pytest.fixture(scope="session")
def golden() -> Path:
    """Read-only golden files. Copy them (golden_copy) before writing beside them."""
    return golden_root()


@pytest.fixture
def golden_copy(tmp_path, golden):
    """Copy one golden subfolder into tmp_path and return the copy's path."""

    def copy(sub: str) -> Path:
        dst = tmp_path / "golden" / sub
        shutil.copytree(golden / sub, dst, symlinks=True)
        return dst

    return copy


@pytest.fixture
def fork_anyway(monkeypatch):
    """Pools fork even though this test process runs other threads (pool_context forks only a
    single-threaded process; pyarrow's jemalloc background thread alone makes two). While the
    fork happens Arrow allocates from mimalloc, which no background thread holds a lock of:
    with jemalloc as the pool (ml/arrow_memory.py), purging at once, a forked worker could wait
    forever on a lock its background threads held at the fork, so they are set back to Arrow's
    own, lazy decay while the test forks."""
    import pyarrow as pa
    monkeypatch.setattr("ml.process_pool.thread_count", lambda: 1)
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    jemalloc = previous.backend_name == "jemalloc"
    if jemalloc:
        pa.jemalloc_set_decay_ms(1000)   # Arrow's own setting: its background threads idle
    yield
    pa.set_memory_pool(previous)
    if jemalloc:
        pa.jemalloc_set_decay_ms(0)      # as ml/arrow_memory.py sets it


@pytest.fixture
def full_disk(monkeypatch):
    """Every write of the packed formats' writers fails as a full disk does (ENOSPC)."""
    def no_space(fd, buffers):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ml.formats.file_access.os.writev", no_space)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under IMAGEDS_REQUIRE_SERVICES=1 (set by .ci/run) a skipped `service` test is a failure."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("service")
            and services_required()):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"service test skipped while {REQUIRE_SERVICES_ENV}=1 "
                           f"(services must be present in CI): {reason}")
