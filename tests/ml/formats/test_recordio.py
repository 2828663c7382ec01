"""MXNet RecordIO: golden files read field by field, re-written byte for byte, damage refused."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import struct
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.errors import DatasetError, FormatError
from ml.formats.recordio import (
    MAGIC, MAGIC_BYTES, IRHeader, RecordIOReader, RecordIOWriter, frame_record, iter_records,
    pack_header, unpack_header)
from tests.conftest import golden_root
from tests.ml.corruption import corrupted

INDEXED = ("plain", "array_labels", "magic_split")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def part_cflags(data: bytes) -> list[int]:
    """The cflag of every part of a well-formed .rec, walking the part headers."""
    cflags = []
    offset = 0
    while offset < len(data):
        magic, lrec = struct.unpack_from("<II", data, offset)
        assert magic == MAGIC
        cflags.append(lrec >> 29)
        offset += 8 + (((lrec & (2**29 - 1)) + 3) & ~3)
    return cflags


@pytest.fixture(scope="module")
def expected(golden) -> dict:
    return json.loads((golden / "recordio" / "expected.json").read_text())


def rewrite(reader: RecordIOReader, rec: Path, idx: Path | None) -> None:
    """Read every record, unpack and re-pack it, write it under the same key."""
    with RecordIOWriter(rec, idx) as writer:
        for key, record in reader:
            header, payload = unpack_header(record)
            writer.write(key, pack_header(header, payload))


# ------------------------------------------------------------------------------- golden reads

@pytest.mark.parametrize("name", INDEXED)
def test_indexed_golden_fields_and_payloads(golden, expected, name):
    with RecordIOReader(golden / "recordio" / f"{name}.rec") as reader:
        assert reader.keys.tolist() == [e["key"] for e in expected[name]]
        for entry in expected[name]:
            header, payload = reader.read_unpacked(entry["key"])
            assert sha(payload) == entry["payload_sha256"]
            assert len(payload) == entry["payload_len"]
            cheap = reader.read_header(entry["key"])
            for got in (header, cheap):
                if "flag" in entry:
                    assert (got.flag, got.id, got.id2) == (entry["flag"], entry["id"], entry["id2"])
                if isinstance(entry["label"], list):
                    assert got.label.dtype == np.float32
                    assert got.label.tolist() == entry["label"]
                else:
                    assert got.label == entry["label"]


def test_array_labels_bulk_header_read(golden, expected):
    with RecordIOReader(golden / "recordio" / "array_labels.rec") as reader:
        flags, labels = reader.read_labels(reader.keys, width=3)
    for row, entry in enumerate(expected["array_labels"]):
        assert flags[row] == entry["flag"]
        assert labels[row, :entry["flag"]].tolist() == entry["label"]
        assert np.isnan(labels[row, entry["flag"]:]).all()


def test_sequential_golden_without_idx(golden, expected):
    rec = golden / "recordio" / "sequential.rec"
    records = list(iter_records(rec))
    assert len(records) == len(expected["sequential"])
    for (offset, record), entry in zip(records, expected["sequential"]):
        header, payload = unpack_header(record)
        assert offset % 4 == 0
        assert header.label == entry["label"]
        assert (sha(payload), len(payload)) == (entry["payload_sha256"], entry["payload_len"])
    with RecordIOReader(rec) as reader:            # no .idx: keys are positions, found by scan
        assert reader.idx_path is None
        assert reader.keys.tolist() == [e["index"] for e in expected["sequential"]]
        assert reader.read(2) == records[2][1]
        assert [r for _, r in reader] == [r for _, r in records]


def test_magic_split_golden_is_made_of_parts(golden):
    assert part_cflags((golden / "recordio" / "magic_split.rec").read_bytes()) == [1, 2, 3, 1, 3, 0]
    with RecordIOReader(golden / "recordio" / "magic_split.rec") as reader:
        assert reader.read(0)[24:] == b"abcd" + MAGIC_BYTES + b"efgh" + MAGIC_BYTES + b"ij"


# ------------------------------------------------------------------------------- writing

@pytest.mark.parametrize("name", INDEXED + ("insightface_legacy/train",
                                           "insightface_recbuilder/train"))
def test_rewrite_is_byte_identical(golden, tmp_path, name):
    source = golden / "recordio" / f"{name}.rec"
    rec, idx = tmp_path / "out.rec", tmp_path / "out.idx"
    with RecordIOReader(source) as reader:
        rewrite(reader, rec, idx)
    assert sha(rec.read_bytes()) == sha(source.read_bytes())
    assert idx.read_bytes() == source.with_suffix(".idx").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.idx", "out.rec"]


def test_rewrite_sequential_without_idx(golden, tmp_path):
    source = golden / "recordio" / "sequential.rec"
    with RecordIOReader(source) as reader:
        rewrite(reader, tmp_path / "s.rec", None)
    assert (tmp_path / "s.rec").read_bytes() == source.read_bytes()
    assert not (tmp_path / "s.idx").exists()


def test_pack_follows_mxnet_rules():
    scalar = pack_header(IRHeader(5, 2.5, 7, 9), b"img")      # numeric label: flag forced to 0
    assert scalar == struct.pack("<IfQQ", 0, 2.5, 7, 9) + b"img"
    array = pack_header(IRHeader(0, [1, 0.5], 3, 0), b"img")  # list label: flag = its length
    assert array == struct.pack("<IfQQ", 2, 0.0, 3, 0) + struct.pack("<2f", 1, 0.5) + b"img"
    header, payload = unpack_header(array)
    assert header.flag == 2 and header.label.tolist() == [1.0, 0.5] and payload == b"img"
    with pytest.raises(FormatError, match="shorter than the 24-byte IRHeader"):
        unpack_header(b"\0" * 10)
    with pytest.raises(FormatError, match="flag says 5 float32 labels"):
        unpack_header(struct.pack("<IfQQ", 5, 0, 0, 0) + b"\0" * 8)


@pytest.mark.parametrize("body, cflags", [
    (MAGIC_BYTES + b"tail", [1, 3]),                     # magic first: empty start part
    (b"abcd" + MAGIC_BYTES + MAGIC_BYTES + b"x", [1, 2, 3]),   # back to back: empty middle
    (b"abcd" + MAGIC_BYTES, [1, 3]),                     # magic last: empty end part
    (b"a" + MAGIC_BYTES + b"bcd", [0]),                  # unaligned magic: not split
    (bytes(70000) + MAGIC_BYTES + b"z", [1, 3]),         # large record, written on its own
])
def test_split_rule_edge_cases(body, cflags, tmp_path):
    with RecordIOWriter(tmp_path / "e.rec", tmp_path / "e.idx") as writer:
        writer.write(3, body)
    data = (tmp_path / "e.rec").read_bytes()
    assert part_cflags(data) == cflags
    assert len(data) % 4 == 0 and data == b"".join(frame_record(body))
    assert RecordIOReader(tmp_path / "e.rec").read(3) == body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(st.binary(max_size=9), st.just(MAGIC_BYTES)), max_size=6)
                .map(b"".join), max_size=6))
def test_any_records_round_trip(tmp_path_factory, records):
    folder = tmp_path_factory.mktemp("roundtrip", numbered=True)
    with RecordIOWriter(folder / "r.rec", folder / "r.idx") as writer:
        for key, record in enumerate(records):
            writer.write(key * 3, record)
    sequential = list(iter_records(folder / "r.rec"))
    assert [record for _, record in sequential] == records
    with RecordIOReader(folder / "r.rec") as reader:
        assert [reader.read(key * 3) for key in range(len(records))] == records
        assert reader.table.offsets.tolist() == [offset for offset, _ in sequential]


def test_write_packed_equals_write_of_packed_record(tmp_path):
    headers = [IRHeader(0, 3.0, 1, 2), IRHeader(0, [1.5, MAGIC], 7, 0)]
    payloads = [b"small" + MAGIC_BYTES, bytes(3) + MAGIC_BYTES + os.urandom(90000)]
    for name, packed in (("one", True), ("two", False)):
        with RecordIOWriter(tmp_path / f"{name}.rec", tmp_path / f"{name}.idx") as writer:
            for key, (header, payload) in enumerate(zip(headers * 2, payloads * 2)):
                if packed:
                    writer.write_packed(key, header, payload)
                else:
                    writer.write(key, pack_header(header, payload))
    assert (tmp_path / "one.rec").read_bytes() == (tmp_path / "two.rec").read_bytes()
    assert (tmp_path / "one.idx").read_bytes() == (tmp_path / "two.idx").read_bytes()
    assert RecordIOReader(tmp_path / "one.rec").read_unpacked(3)[1] == payloads[1]


def test_writer_refuses_duplicate_keys_and_huge_records(tmp_path):
    with RecordIOWriter(tmp_path / "d.rec", tmp_path / "d.idx") as writer:
        writer.write(5, b"a")
        writer.write(2, b"b")                            # keys need not increase
        with pytest.raises(ValueError, match="key 5 was already written"):
            writer.write(5, b"c")

    class Huge(bytes):
        def __len__(self) -> int:
            return 2**29

    with pytest.raises(ValueError, match="shorter than 2\\^29"):
        frame_record(Huge())
    assert RecordIOReader(tmp_path / "d.rec").keys.tolist() == [5, 2]


def test_failed_write_keeps_previous_files(tmp_path):
    rec, idx = tmp_path / "a.rec", tmp_path / "a.idx"
    with RecordIOWriter(rec, idx) as writer:
        writer.write(0, b"old record")
    before = (rec.read_bytes(), idx.read_bytes())
    with pytest.raises(RuntimeError):
        with RecordIOWriter(rec, idx) as writer:
            writer.write(0, b"new record" * 1000)
            raise RuntimeError("crash mid-way")
    assert (rec.read_bytes(), idx.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.idx", "a.rec"]


def test_writer_sha256_matches_file(tmp_path):
    payload = os.urandom(3 << 20)                          # spans several 1 MiB chunks
    with RecordIOWriter(tmp_path / "h.rec", sha256=True) as writer:
        for key in range(4):
            writer.write(key, payload[key:])
    assert writer.sha256 == sha((tmp_path / "h.rec").read_bytes())
    assert writer.position == (tmp_path / "h.rec").stat().st_size


# ------------------------------------------------------------------------------- processes

def _child_digests(reader: RecordIOReader, keys: list[int], conn) -> None:
    conn.send([sha(reader.read(key)) for key in keys])
    conn.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reader_survives_fork_and_pickle(golden, method):
    reader = RecordIOReader(golden / "recordio" / "plain.rec")
    keys = reader.keys.tolist()
    parent = [sha(reader.read(key)) for key in keys]       # descriptor opened before the fork
    context = multiprocessing.get_context(method)
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child_digests, args=(reader, keys, send))
    child.start()
    assert receive.recv() == parent
    child.join(30)
    assert child.exitcode == 0
    assert [sha(reader.read(key)) for key in keys] == parent
    assert [sha(pickle.loads(pickle.dumps(reader)).read(key)) for key in keys] == parent


def test_reader_refuses_a_file_replaced_under_it(golden_copy):
    folder = golden_copy("recordio")
    reader = RecordIOReader(folder / "plain.rec")
    reader.read(0)
    reader.close()
    (folder / "plain.rec").write_bytes((folder / "array_labels.rec").read_bytes())
    with pytest.raises(FormatError, match="replaced or changed"):
        reader.read(0)


# ------------------------------------------------------------------------------- damage

@contextmanager
def preads_within_file():
    """Fail the test if any pread asks for bytes outside the file it reads."""
    real = os.pread

    def checked(fd: int, count: int, offset: int) -> bytes:
        size = os.fstat(fd).st_size
        assert 0 <= offset and offset + count <= size, f"pread({count}, {offset}) of {size} bytes"
        return real(fd, count, offset)

    with mock.patch("os.pread", checked):
        yield


def read_everything(rec: Path, idx: Path | None) -> None:
    with RecordIOReader(rec, idx if idx else False) as reader:
        for key in reader.keys.tolist():
            reader.read(key)
            reader.read_header(key)
        reader.read_labels(reader.keys, width=2)
        list(reader)
    list(iter_records(rec))


def part_offsets(data: bytes) -> list[int]:
    return [i for i in range(0, len(data) - 3, 4) if data[i:i + 4] == MAGIC_BYTES]


def golden_bytes(name: str, suffix: str) -> bytes:
    return (golden_root() / "recordio" / f"{name}{suffix}").read_bytes()


def assert_only_format_errors(folder: Path, rec: Path, idx: Path | None) -> None:
    try:
        with preads_within_file():
            read_everything(rec, idx)
    except FormatError as err:
        assert err.path in (str(rec), str(idx))
        assert err.offset is None or 0 <= err.offset <= Path(err.path).stat().st_size
        assert err.path in str(err)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(INDEXED), target=st.sampled_from([".rec", ".idx"]))
def test_damaged_files_raise_only_format_error(tmp_path_factory, data, name, target):
    folder = tmp_path_factory.mktemp("damage", numbered=True)
    files = {suffix: golden_bytes(name, suffix) for suffix in (".rec", ".idx")}
    hot = [o + 4 for o in part_offsets(files[".rec"])] if target == ".rec" else []
    files[target] = data.draw(corrupted(files[target], hot))
    for suffix, content in files.items():
        (folder / f"x{suffix}").write_bytes(content)
    assert_only_format_errors(folder, folder / "x.rec", folder / "x.idx")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_sequential_file_raises_only_format_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("damage_seq", numbered=True)
    original = golden_bytes("sequential", ".rec")
    hot = [o + 4 for o in part_offsets(original)]
    (folder / "s.rec").write_bytes(data.draw(corrupted(original, hot)))
    assert_only_format_errors(folder, folder / "s.rec", None)


def test_corrupt_lengths_are_refused_before_reading(tmp_path):
    rec = tmp_path / "x.rec"
    rec.write_bytes(struct.pack("<II", MAGIC, 2**29 - 1) + b"\0" * 24)
    with pytest.raises(FormatError, match="part length 536870911 runs past the end") as err:
        list(iter_records(rec))
    assert err.value.offset == 0 and err.value.path == str(rec)


def test_continuation_chain_ends_at_end_of_file(tmp_path):
    rec = tmp_path / "chain.rec"
    start = struct.pack("<II", MAGIC, 1 << 29)
    middle = struct.pack("<II", MAGIC, 2 << 29)
    rec.write_bytes(start + middle * 5000)                 # never a cflag 3 end part
    with pytest.raises(FormatError, match="record header cut off") as err:
        list(iter_records(rec))
    assert err.value.offset == rec.stat().st_size
    rec.write_bytes(start + start)
    with pytest.raises(FormatError, match="expected a continuation part"):
        list(iter_records(rec))


def test_idx_pointing_past_rec_is_clear(golden_copy):
    folder = golden_copy("recordio")
    idx = folder / "plain.idx"
    lines = idx.read_bytes().splitlines(keepends=True)
    idx.write_bytes(b"".join(lines[:3]) + b"3\t1152921504606846976\n" + b"".join(lines[4:]))
    with pytest.raises(FormatError) as err:
        RecordIOReader(folder / "plain.rec", idx)
    assert err.value.path == str(idx)
    assert err.value.offset == len(b"".join(lines[:3]))
    size = (folder / "plain.rec").stat().st_size
    assert f"past the end of the .rec file ({size} bytes)" in str(err.value)


@pytest.mark.parametrize("content, offset, problem", [
    (b"0\t0\n1\tforty\n", 4, "bad index line"),
    (b"0\t0\n0\t2600\n", 4, "key 0 is listed twice"),
    (b"0\t0\n1\t2601\n", 4, "not 4-byte aligned"),
    (b"0\t0\t7\n", 0, "3 tab-separated fields"),
])
def test_bad_idx_lines_name_their_offset(golden_copy, content, offset, problem):
    folder = golden_copy("recordio")
    (folder / "plain.idx").write_bytes(content)
    with pytest.raises(FormatError, match=problem) as err:
        RecordIOReader(folder / "plain.rec")
    assert err.value.offset == offset


def test_missing_rec_is_format_error(tmp_path):
    with pytest.raises(FormatError, match="cannot open RecordIO file"):
        RecordIOReader(tmp_path / "nope.rec")


def test_a_full_disk_while_packing_names_the_file_and_the_free_space(tmp_path, full_disk):
    """A bare `OSError: [Errno 28]` before."""
    with pytest.raises(DatasetError, match=r"train\.rec: writing after 0 bytes failed \(no space "
                                           r"left on device\); \d+ bytes free on that filesystem"):
        with RecordIOWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
            for key in range(300):
                writer.write(key, b"x" * 4000)
    assert list(tmp_path.iterdir()) == []
