"""Random reads of a file (ml/formats/file_access.py): many small reads gathered at once give
exactly the bytes a pread each would, zeros past the end of the file."""

from __future__ import annotations

import numpy as np

from ml.formats import file_access
from ml.formats.file_access import PreadFile


def test_gather_reads_what_a_pread_each_would_and_zeros_past_the_end(tmp_path, monkeypatch):
    monkeypatch.setattr(file_access, "GATHER_ROWS", 7)        # several maps
    monkeypatch.setattr(file_access, "MAP_WINDOW", 5_000)     # smaller than the file
    data = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    (tmp_path / "f.bin").write_bytes(data)
    offsets = np.array([0, 13, 4_096, 9_990, 9_999, 10_000, 12_345, 4_096, 5, -3] * 3)
    rows = PreadFile(tmp_path / "f.bin").gather(offsets, 24)
    assert rows.shape == (len(offsets), 24) and rows.dtype == np.uint8
    for offset, row in zip(offsets.tolist(), rows):
        assert row.tobytes() == data[offset:offset + 24].ljust(24, b"\0")


def test_gather_of_nothing_and_of_an_empty_file(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert PreadFile(tmp_path / "empty").gather(np.array([0, 3]), 8).tolist() == [[0] * 8] * 2
    (tmp_path / "f").write_bytes(b"abc")
    assert PreadFile(tmp_path / "f").gather(np.array([], dtype=np.int64), 8).shape == (0, 8)


def test_gather_maps_a_window_at_a_time(tmp_path, monkeypatch):
    """What gather maps of a large file stays resident only while its window is mapped."""
    monkeypatch.setattr(file_access, "MAP_WINDOW", 1 << 16)
    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 4096)      # 1 MiB
    lengths = []
    real = file_access.mmap.mmap

    def recorded(fd, length, *args, **kwargs):
        lengths.append(length)
        return real(fd, length, *args, **kwargs)

    monkeypatch.setattr(file_access.mmap, "mmap", recorded)
    offsets = np.arange(0, 1 << 20, 1000)[::-1]                     # any order
    rows = PreadFile(tmp_path / "f.bin").gather(offsets, 4)
    assert rows[:, 0].tolist() == [o % 256 for o in offsets.tolist()]
    assert len(lengths) >= 16 and max(lengths) <= 1 << 16


def test_output_file_starts_writeback_every_stretch_and_writes_every_byte(tmp_path, monkeypatch):
    """A large output is sent to disk while it is written (a hint every WRITEBACK_BYTES, on the
    helper thread, each covering the bytes since the last), so the closing fsync does not wait
    for the whole file; the file still holds exactly what was written, with its sha256."""
    import hashlib
    import os
    import sys

    from ml.formats.file_access import OutputFile

    asked = []
    real = file_access.start_writeback
    monkeypatch.setattr(file_access, "WRITEBACK_BYTES", 1 << 20)
    monkeypatch.setattr(file_access, "start_writeback",
                        lambda fd, offset, length: asked.append((offset, length))
                        or real(fd, offset, length))
    pieces = [bytes([i]) * 300_000 for i in range(12)]           # 3.6 MB in 12 writes
    out = OutputFile(tmp_path / "out.bin", sha256=True)
    for piece in pieces:
        out.write([piece])
    out.close()
    data = b"".join(pieces)
    assert (tmp_path / "out.bin").read_bytes() == data
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    assert asked == [(0, 1_200_000), (1_200_000, 1_200_000), (2_400_000, 1_200_000)]
    if sys.platform.startswith("linux"):                       # the kernel accepts the hint
        fd = os.open(tmp_path / "out.bin", os.O_RDWR)
        try:
            assert real(fd, 0, len(data))
        finally:
            os.close(fd)


def test_a_write_held_by_the_disk_does_not_hold_the_caller(tmp_path, monkeypatch):
    """Past the dirty pages a device may hold, every write waits for the disk; the writes are
    made on the helper thread, so the caller goes on framing the next records meanwhile (up to
    QUEUED_BYTES ahead). The file still holds every buffer in order, a reused bytearray as it
    was when handed over."""
    import os
    import threading

    from ml.formats.file_access import OutputFile

    disk_free = threading.Event()
    real_writev = os.writev

    def slow_disk(fd, buffers):
        assert disk_free.wait(10)
        return real_writev(fd, buffers)

    monkeypatch.setattr("ml.formats.file_access.os.writev", slow_disk)
    out = OutputFile(tmp_path / "out.bin", sha256=False)
    reused = bytearray(b"a" * 1000)
    returned = threading.Event()

    def caller():
        out.write([b"first ", reused])
        reused[:] = b"b" * 1000                     # the caller reuses its buffer at once
        out.write([b" second"])
        returned.set()

    thread = threading.Thread(target=caller)
    thread.start()
    assert returned.wait(5), "write() waited for the disk"
    disk_free.set()
    thread.join()
    out.close()
    assert (tmp_path / "out.bin").read_bytes() == b"first " + b"a" * 1000 + b" second"
    assert out.bytes == 1013
