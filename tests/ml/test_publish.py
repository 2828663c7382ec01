"""Packed artifacts are published whole: a version folder and one atomic symlink swap; a crash
(kill -9) at any point leaves the old set or the new one, and the next run removes what the
killed one left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from ml.atomic import remove_stale_temps, temp_sibling
from ml.formats.handles import TFRecordShardsHandle
from ml.formats.tfrecord import iter_records
from ml.packing import pack_tfrecords
from ml.publish import current_version, prune_for, publish_dir, versions_of

REPO = Path(__file__).resolve().parents[2]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_failed_build_leaves_the_published_folder_untouched(tmp_path):
    final = tmp_path / "art"
    with publish_dir(final) as build:
        (build.path / "a.txt").write_text("old")
    before = tree(final)
    with pytest.raises(RuntimeError):
        with publish_dir(final) as build:
            (build.path / "a.txt").write_text("new")
            (build.path / "b.txt").write_text("new")
            raise RuntimeError("disk full half-way")
    assert tree(final) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["art", current_version(final).name])


def test_the_previous_version_stays_until_the_new_handle_is_recorded(tmp_path):
    final = tmp_path / "art"
    with publish_dir(final, keep_previous=True) as first:
        (first.path / "x").write_text("1")
    with publish_dir(final, keep_previous=True) as second:
        (second.path / "x").write_text("2")
    assert (final / "x").read_text() == "2"
    assert (first.published / "x").read_text() == "1"      # an old handle still reads its files
    record = TFRecordShardsHandle(out_dir=str(second.published),
                                  shards={"train": (str(second.published / "x"),)},
                                  records={"train": 1}, num_classes=1)
    assert prune_for(record) == [first.published]
    assert versions_of(final) == [second.published]


def test_a_folder_from_before_versions_is_replaced_whole(tmp_path):
    final = tmp_path / "recordio"
    final.mkdir()
    (final / "train.rec").write_text("old layout")
    with publish_dir(final) as build:
        (build.path / "train.rec").write_text("new")
    assert final.is_symlink() and (final / "train.rec").read_text() == "new"
    assert versions_of(final) == [current_version(final)]


def _frame(tmp_path: Path, n: int = 40) -> pd.DataFrame:
    rows = []
    for i in range(n):
        path = tmp_path / "img" / f"{i:03d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (16, 16), (i * 5 % 256, 30, 60)).save(path, "JPEG")
        rows.append({"file": str(path), "label_index": i % 4, "label": f"c{i % 4}",
                     "height": 16, "width": 16, "source_key": path.name,
                     "split": ("train", "val", "test")[i % 3]})
    return pd.DataFrame(rows)


KILLED_REPACK = textwrap.dedent("""
    import os, signal, sys
    import pandas as pd
    sys.path.insert(0, {repo!r})
    import ml.formats.tfrecord as tfrecord
    from ml.packing import pack_tfrecords
    frame = pd.read_pickle({frame!r})
    written = 0
    original = tfrecord.ShardWriter.write
    def write(self, record):
        global written
        written += 1
        if written == {kill_after}:
            os.kill(os.getpid(), signal.SIGKILL)      # kill -9 in the middle of the re-pack
        return original(self, record)
    tfrecord.ShardWriter.write = write
    pack_tfrecords(frame, {out!r}, target_shard_bytes=600, seed=7)
""")


@pytest.mark.parametrize("kill_after", [1, 20, 39])
def test_kill_9_during_a_repack_leaves_the_old_set_whole_and_the_next_run_cleans_up(
        tmp_path, kill_after):
    frame = _frame(tmp_path)
    out = tmp_path / "outputs" / "tfrecords"
    old = pack_tfrecords(frame, out, target_shard_bytes=600, seed=0)
    old_files = tree(out)
    frame.to_pickle(tmp_path / "frame.pkl")
    script = KILLED_REPACK.format(repo=str(REPO), frame=str(tmp_path / "frame.pkl"),
                                  kill_after=kill_after, out=str(out))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]

    assert tree(out) == old_files                        # the old set, whole: nothing mixed in
    for paths in old.shards.values():                    # and the old handle's files are there
        for p in paths:
            assert list(iter_records(p))
    leftovers = [p for p in out.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers                                     # the killed run's temporary folder

    new = pack_tfrecords(frame, out, target_shard_bytes=600, seed=7)
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]
    assert sum(new.records.values()) == len(frame) and tree(out) != old_files
    prune_for(new)
    assert versions_of(out) == [current_version(out)]


def test_stale_temporaries_of_a_live_process_are_left_alone(tmp_path):
    target = tmp_path / "splits.parquet"
    mine = temp_sibling(target)                          # this (live) process's
    mine.write_text("being written")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        others = mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{live.pid}-"))
        others.write_text("another live run")
        dead = mine.with_name(mine.name.replace(f"-{os.getpid()}-", "-999999999-"))
        dead.write_text("killed run")
        unrelated = tmp_path / ".other.parquet.tmp-000000-1-0123abcd"
        unrelated.write_text("not this file's")
        assert remove_stale_temps(target) == [dead]
        assert mine.exists() and others.exists() and unrelated.exists() and not dead.exists()
    finally:
        live.kill()


def test_a_resize_run_removes_what_a_killed_resize_left(tmp_path):
    from ml.resize import ResizeItem, ResizeSpec, stage_resize

    src = tmp_path / "src" / "a.jpg"
    src.parent.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(src)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = out / "sub" / ".a.jpg.tmp-999999999-0123abcd"            # pre-host-tag name, dead pid
    dead.write_bytes(b"half an image")
    live = temp_sibling(out / "sub" / "b.jpg")                          # this live process's
    live.write_bytes(b"being written")
    stage_resize([ResizeItem("a", str(src), "a")], out, ResizeSpec(width=16, height=16), workers=1)
    assert not dead.exists() and live.exists() and (out / "a.jpg").exists()


def test_a_run_after_one_that_ended_well_does_not_walk_the_output_tree(tmp_path, monkeypatch):
    from ml import atomic
    walks = []
    real = atomic.remove_stale_temps_under
    monkeypatch.setattr(atomic, "remove_stale_temps_under", lambda f: walks.append(f) or real(f))
    out, marks = tmp_path / "out", tmp_path / "out" / ".bookkeeping"
    for _ in range(2):
        with atomic.run_leaving_no_temps(out, marks):
            (out / "x.jpg").write_bytes(b"x")
    assert walks == [out]                      # the first run (no run had marked itself yet)
    assert sorted(p.name for p in marks.iterdir()) == [atomic.RUNS_MARKED]

    killed = marks / ".run.tmp-999999999-0123abcd"                 # a killed run's marker
    killed.touch()
    half = out / "sub" / ".y.jpg.tmp-999999999-0123abcd"           # and what it left
    half.parent.mkdir()
    half.write_bytes(b"half")
    with atomic.run_leaving_no_temps(out, marks):
        pass
    assert len(walks) == 2 and not half.exists() and not killed.exists()

    with pytest.raises(RuntimeError):
        with atomic.run_leaving_no_temps(out, marks):
            raise RuntimeError("a failed run")
    with atomic.run_leaving_no_temps(out, marks):                  # after a failure: a walk
        pass
    assert len(walks) == 3
