"""Process pools under an installed program's `__main__` (Dagster's CLI, pytest): workers made
by ml.process_pool.pool_context do not re-import it (under Dagster that import took ~3.5 s per
pool); a project script's `__main__` is still imported, so functions defined there still work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROGRAM = textwrap.dedent("""
    import os, sys, threading
    sys.path.insert(0, {repo!r})
    with open({marker!r}, "a") as fh:       # who imported this main module
        fh.write(f"{{os.getpid()}}\\n")
    from concurrent.futures import ProcessPoolExecutor
    from ml.process_pool import pool_context
    from tests.ml.test_process_pool import worker_pid

    if __name__ == "__main__":
        hold = threading.Event()            # a second thread: forkserver, not fork
        threading.Thread(target=hold.wait).start()
        try:
            context = pool_context(["ml.file_stats"])
            assert context.get_start_method() == "forkserver", context.get_start_method()
            with ProcessPoolExecutor(2, mp_context=context) as pool:
                print(sorted(set(pool.map(worker_pid, range(8)))))
        finally:
            hold.set()
""")


def run_program(folder: Path, marker: Path) -> tuple[set[int], list[int]]:
    """(the pids of the pool's workers, the pids that imported the program's main module)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "tool.py"
    script.write_text(PROGRAM.format(repo=str(REPO), marker=str(marker)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    workers = set(json.loads(done.stdout.strip().splitlines()[-1]))
    return workers, [int(line) for line in marker.read_text().split()]


def worker_pid(_: int) -> int:
    return os.getpid()


def test_workers_skip_an_installed_programs_main(tmp_path):
    workers, importers = run_program(tmp_path / "venv" / "lib" / "site-packages" / "tool",
                                     tmp_path / "imported_by")
    assert workers and len(importers) == 1 and importers[0] not in workers


def test_workers_still_import_a_project_scripts_main(tmp_path):
    workers, importers = run_program(tmp_path / "bench", tmp_path / "imported_by")
    assert workers and workers <= set(importers[1:])


def test_in_flight_keeps_at_most_limit_calls_made_and_tags_every_result():
    from concurrent.futures import ThreadPoolExecutor

    from ml.process_pool import in_flight
    made, peak = [], []

    def calls():
        for i in range(50):
            made.append(i)
            yield i, pow, (i, 2)

    got = {}
    with ThreadPoolExecutor(3) as pool:
        for tag, future in in_flight(pool, calls(), limit=4):
            peak.append(len(made) - len(got))          # calls made and not yet handed back
            got[tag] = future.result()
    assert got == {i: i * i for i in range(50)}
    assert max(peak) <= 4                              # never drawn ahead of the workers
