"""A data file and its sidecar (TFRecord's DALI index, RecordIO's .idx, a memfile's .conf) are
put in place by one helper, ml.atomic.commit_with_sidecar: a crash between its renames leaves
the data without a sidecar (readers refuse it), never a sidecar that describes other data."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ml.atomic as atomic
from ml.errors import FormatError
from ml.formats.memfile import open_memfile, write_memfile
from ml.formats.recordio import RecordIOReader, RecordIOWriter
from ml.formats.tfrecord import index_path_for, iter_records, read_index, write_tfrecord


def crash_on_rename(monkeypatch, number: int) -> None:
    """os.replace (as ml.atomic calls it) fails on its `number`-th call."""
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == number:
            raise OSError(28, "No space left on device (simulated)")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)


def write_tf(path, records):
    write_tfrecord(path, records, write_index=True)


def read_tf(path):
    index = read_index(index_path_for(path), os.path.getsize(path))     # refuses a stale one
    records = list(iter_records(path))
    assert len(index) == len(records)
    return records


def write_rec(path, records):
    with RecordIOWriter(path, path.with_suffix(".idx")) as writer:
        for key, record in enumerate(records):
            writer.write(key, record)


def read_rec(path):
    with RecordIOReader(path, path.with_suffix(".idx")) as reader:
        return [reader.read(int(k)) for k in reader.keys]


def write_mem(path, records):
    write_memfile(path, np.frombuffer(b"".join(records), np.uint8).reshape(len(records), -1))


def read_mem(path):
    return [bytes(row) for row in np.asarray(open_memfile(path))]


FORMATS = {"tfrecord": (write_tf, read_tf, "a.tfrecord"),
           "recordio": (write_rec, read_rec, "a.rec"),
           "memfile": (write_mem, read_mem, "a.mem")}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("crash_at", [1, 2, 3, 4])
def test_a_failed_commit_leaves_the_old_pair_whole(tmp_path, monkeypatch, fmt, crash_at):
    """Whichever rename fails (old pair aside, new data in, new sidecar in), the old data and
    its sidecar are still read back as they were; the next write succeeds."""
    write, read, name = FORMATS[fmt]
    path = tmp_path / name
    old = [b"old-" + bytes([i]) * 12 for i in range(3)]
    new = [b"new-" + bytes([i]) * 20 for i in range(5)]
    write(path, old)
    assert read(path) == old
    crash_on_rename(monkeypatch, crash_at)
    with pytest.raises(Exception):
        write(path, new)
    monkeypatch.undo()
    assert read(path) == old
    write(path, new)
    assert read(path) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {path.name, index_path_for(path).name if fmt == "tfrecord" else
         path.with_suffix(".idx").name if fmt == "recordio" else path.name + ".conf"})


def test_a_crash_between_the_renames_leaves_no_mismatched_pair(tmp_path):
    """A process killed after the new data went in but before its index: the data has no
    index (refused by name), and the old index lies aside as a temporary, not beside it."""
    path = tmp_path / "a.rec"
    write_rec(path, [b"old"] * 3)
    idx = path.with_suffix(".idx")
    aside = atomic.temp_sibling(idx)
    os.replace(idx, aside)                       # what commit_with_sidecar does first
    with pytest.raises(FormatError):
        RecordIOReader(path, idx)
