from __future__ import annotations

import errno
import hashlib
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from ml.errors import DatasetError, FormatError
from ml.formats import memfile
from ml.formats.memfile import MemfileWriter, conf_path_for, open_memfile, write_memfile
from tests.ml.corruption import corrupted

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def seed_002_read(path) -> np.ndarray:
    """Seed 002's own reader (evaluate_utils.read_memmap), read-only."""
    with open(str(path) + ".conf") as f:
        config = json.load(f)
    return np.memmap(path, mode="r", shape=tuple(config["shape"]), dtype=config["dtype"])


def siblings(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("dtype", ["float32", "uint8", "int64", "bool", "float16"])
def test_round_trip_is_raw_c_order_with_exact_conf(tmp_path, dtype):
    arr = (np.arange(2 * 3 * 4 * 5) % 7).astype(dtype).reshape(2, 3, 4, 5)
    info = write_memfile(tmp_path / "val.dat", arr)

    assert (tmp_path / "val.dat").read_bytes() == arr.tobytes(order="C")
    assert (tmp_path / "val.dat.conf").read_text() == \
        json.dumps({"shape": [2, 3, 4, 5], "dtype": dtype})
    assert info.nbytes == arr.nbytes and info.shape == arr.shape and info.dtype == dtype
    assert info.sha256 == hashlib.sha256(arr.tobytes()).hexdigest()
    mm = open_memfile(tmp_path / "val.dat")
    assert isinstance(mm, np.memmap) and mm.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(mm, arr)
    np.testing.assert_array_equal(seed_002_read(tmp_path / "val.dat"), arr)
    assert siblings(tmp_path) == ["val.dat", "val.dat.conf"]      # no temporaries left


def test_open_is_read_only_by_default_and_r_plus_writes_through(tmp_path):
    write_memfile(tmp_path / "m", np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError):
        open_memfile(tmp_path / "m")[0, 0] = 1.0
    rw = open_memfile(tmp_path / "m", mode="r+")
    rw[1, 1] = 5.0
    rw.flush()
    assert open_memfile(tmp_path / "m")[1, 1] == 5.0
    with pytest.raises(ValueError, match="mode"):
        open_memfile(tmp_path / "m", mode="w+")


def test_writer_fills_rows_chunk_by_chunk(tmp_path):
    full = np.random.default_rng(0).random((10, 3, 4), dtype=np.float32)
    with MemfileWriter(tmp_path / "big", full.shape, "float32") as writer:
        for start in range(0, 10, 4):
            writer.append(full[start:start + 4])
    np.testing.assert_array_equal(open_memfile(tmp_path / "big"), full)
    assert writer.info.sha256 == hashlib.sha256(full.tobytes()).hexdigest()

    chunked = write_memfile(tmp_path / "gen", shape=(10, 3, 4), dtype="float32",
                            chunks=(full[i:i + 3] for i in range(0, 10, 3)))
    assert chunked.sha256 == writer.info.sha256


def test_missing_rows_commit_nothing_and_keep_the_old_memfile(tmp_path):
    old = np.arange(6, dtype=np.int32).reshape(3, 2)
    write_memfile(tmp_path / "m", old)
    with pytest.raises(DatasetError, match="only 1 of 3 rows"):
        with MemfileWriter(tmp_path / "m", (3, 2), "int32") as writer:
            writer.append(np.zeros((1, 2), np.int32))
    np.testing.assert_array_equal(open_memfile(tmp_path / "m"), old)
    assert siblings(tmp_path) == ["m", "m.conf"]


def test_rows_of_the_wrong_shape_or_an_unsafe_dtype_are_refused(tmp_path):
    with MemfileWriter(tmp_path / "m", (4, 2), "uint8") as writer:
        with pytest.raises(ValueError, match=r"expected \(k, 2\)"):
            writer.append(np.zeros((1, 3), np.uint8))
        with pytest.raises(ValueError, match="unsafe cast"):
            writer.append(np.zeros((1, 2), np.float32))
        with pytest.raises(ValueError, match="exceed"):
            writer.append(np.zeros((5, 2), np.uint8))
        writer.append(np.ones((4, 2), np.uint8))
    assert open_memfile(tmp_path / "m").sum() == 8


def test_full_disk_is_a_dataset_error_before_any_write(tmp_path, monkeypatch):
    write_memfile(tmp_path / "m", np.ones(4, np.float32))

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(memfile.os, "posix_fallocate", no_space, raising=False)
    big = (1000, 3, 112, 112)
    with pytest.raises(DatasetError) as err:
        write_memfile(tmp_path / "m", shape=big, dtype="float32", chunks=iter(()))
    message = str(err.value)
    assert str(tmp_path / "m") in message
    assert str(1000 * 3 * 112 * 112 * 4) in message          # bytes needed
    assert "bytes free" in message and "no space left" in message
    np.testing.assert_array_equal(open_memfile(tmp_path / "m"), np.ones(4, np.float32))
    assert siblings(tmp_path) == ["m", "m.conf"]


def test_space_is_reserved_not_sparse(tmp_path):
    with MemfileWriter(tmp_path / "m", (256, 1024), "uint8") as writer:
        tmp = writer._tmp
        assert tmp.stat().st_blocks * 512 >= 256 * 1024         # allocated before any row
        writer.append(np.zeros((256, 1024), np.uint8))


def test_a_crash_between_the_renames_never_pairs_new_data_with_an_old_conf(tmp_path, monkeypatch):
    write_memfile(tmp_path / "m", np.zeros((4, 2), np.float32))
    real_replace = os.replace

    def crash_on_conf(src, dst):
        if str(dst).endswith(".conf"):
            raise OSError(errno.EIO, "simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(memfile.os, "replace", crash_on_conf)
    with pytest.raises(DatasetError):
        write_memfile(tmp_path / "m", np.ones((2, 4), np.float32))    # same byte size
    monkeypatch.undo()
    with pytest.raises(FormatError, match="missing .conf"):
        open_memfile(tmp_path / "m")


@pytest.mark.parametrize("conf_text, problem, offset", [
    ('{"shape": [4, 2], "dtype": "float32"', "invalid JSON", 36),   # at the end: truncated
    ('{"shape": [4, 2]}', "missing ['dtype']", None),
    ('{"shape": [4, 2], "dtype": "float32", "order": "F"}', "unknown ['order']", None),
    ('{"shape": [4, 2], "dtype": "float33"}', "unknown dtype 'float33'", None),
    ('{"shape": [4, 2], "dtype": "object"}', "not a plain numeric dtype", None),
    ('{"shape": [4, -2], "dtype": "float32"}', "non-negative integers", None),
    ('{"shape": "4,2", "dtype": "float32"}', "non-negative integers", None),
    ('[4, 2]', "expected a JSON object", 0),
])
def test_bad_conf_is_a_format_error_naming_the_conf(tmp_path, conf_text, problem, offset):
    write_memfile(tmp_path / "m", np.zeros((4, 2), np.float32))
    (tmp_path / "m.conf").write_text(conf_text)
    with pytest.raises(FormatError) as err:
        open_memfile(tmp_path / "m")
    assert err.value.path == str(tmp_path / "m.conf")
    assert problem in err.value.problem
    assert err.value.offset == offset


@pytest.mark.parametrize("change, offset, word", [
    (lambda b: b[:-3], 29, "truncated"),
    (lambda b: b + b"junk", 32, "trailing"),
])
def test_data_size_must_match_the_conf(tmp_path, change, offset, word):
    write_memfile(tmp_path / "m", np.zeros((4, 2), np.float32))
    data = tmp_path / "m"
    data.write_bytes(change(data.read_bytes()))
    with pytest.raises(FormatError) as err:
        open_memfile(data)
    assert err.value.path == str(data) and err.value.offset == offset
    assert word in err.value.problem and "needs 32" in err.value.problem


def test_missing_conf_and_missing_data(tmp_path):
    write_memfile(tmp_path / "m", np.zeros(2, np.uint8))
    (tmp_path / "m").unlink()
    with pytest.raises(FormatError, match="data missing"):
        open_memfile(tmp_path / "m")
    with pytest.raises(FormatError, match="missing .conf"):
        open_memfile(tmp_path / "other")


def test_empty_memfile_opens_as_an_empty_read_only_array(tmp_path):
    write_memfile(tmp_path / "e", np.zeros((0, 3, 112, 112), np.float32))
    empty = open_memfile(tmp_path / "e")
    assert empty.shape == (0, 3, 112, 112) and not empty.flags.writeable


VALID_CONF = json.dumps({"shape": [4, 3, 2], "dtype": "float32"}).encode()


@FAST
@given(damaged=corrupted(VALID_CONF, hot=range(0, len(VALID_CONF), 4)))
def test_damaged_conf_raises_only_format_error(tmp_path, damaged):
    write_memfile(tmp_path / "m", np.zeros((4, 3, 2), np.float32))
    conf_path_for(tmp_path / "m").write_bytes(damaged)
    try:
        mm = open_memfile(tmp_path / "m")
    except FormatError as err:
        assert err.path in (str(tmp_path / "m.conf"), str(tmp_path / "m"))
    else:   # a flip that still describes 96 bytes of plain numbers is a valid .conf
        assert mm.nbytes == 96


VALID_DATA = np.arange(24, dtype=np.float32).tobytes()


@FAST
@given(damaged=corrupted(VALID_DATA))
def test_damaged_data_is_caught_by_its_size_or_read_as_is(tmp_path, damaged):
    write_memfile(tmp_path / "m", np.zeros(24, np.float32))
    (tmp_path / "m").write_bytes(damaged)
    try:
        mm = open_memfile(tmp_path / "m")
    except FormatError as err:
        assert err.path == str(tmp_path / "m")
        assert err.offset == min(len(damaged), 96)
    else:   # flipped bytes keep the size: a raw array has no checksum to notice them
        assert len(damaged) == 96 and mm.tobytes() == damaged
