"""TFRecord framing, tf.train.Example codec, shards, DALI index and readers, against TensorFlow's
golden files and against damaged files."""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ml.errors import ConfigError, DatasetError, FormatError
from ml.formats.example_proto import (
    BYTES_LIST, FLOAT_LIST, INT64_LIST, Feature, decode_example, encode_example,
    make_image_example, make_image_example_parts, parse_image_example, to_feature)
from ml.formats.tfrecord import (
    IndexedTFRecord, ShardWriter, TFRecordWriter, assign_shards, detect_compression,
    find_shards, frame_header, frame_record, index_path_for, iter_record_spans, iter_records,
    masked_crc32c, read_index, scan_index, shard_name, write_index, write_shards,
    write_tfrecord)
from tests.ml.corruption import corrupted

GOLDEN_EXAMPLE_FILES = ("examples.tfrecord", "examples_gzip.tfrecord.gz")
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def expected(golden) -> dict:
    return json.loads((golden / "tfrecord" / "expected.json").read_text())


def dali_tfrecord2idx(path: Path) -> str:
    """What NVIDIA DALI's tools/tfrecord2idx writes for `path` (its loop, reimplemented)."""
    lines = []
    with open(path, "rb") as fh:
        while True:
            current = fh.tell()
            byte_len = fh.read(8)
            if not byte_len:
                break
            fh.read(4)
            fh.read(struct.unpack("q", byte_len)[0])
            fh.read(4)
            lines.append(f"{current} {fh.tell() - current}\n")
    return "".join(lines)


# ------------------------------------------------------------------------------ golden files

@pytest.mark.parametrize("name", GOLDEN_EXAMPLE_FILES)
def test_golden_examples_read_as_tensorflow_wrote_them(golden, expected, name):
    records = list(iter_records(golden / "tfrecord" / name))
    assert len(records) == len(expected[name])
    for record, want in zip(records, expected[name]):
        image = parse_image_example(record)
        assert (image.label, image.text, image.filename) == (want["label"], want["text"],
                                                             want["filename"])
        assert (image.height, image.width, image.format) == (want["height"], want["width"],
                                                             "jpeg")
        assert image.extra["image/bbox"].values == tuple(np.float32(want["bbox"]).tolist())
        assert hashlib.sha256(image.encoded).hexdigest() == want["encoded_sha256"]


def test_golden_raw_payloads_including_the_empty_record(golden, expected):
    payloads = list(iter_records(golden / "tfrecord" / "raw_payloads.tfrecord"))
    assert [(hashlib.sha256(p).hexdigest(), len(p)) for p in payloads] == [
        (want["payload_sha256"], want["len"]) for want in expected["raw_payloads.tfrecord"]]


@pytest.mark.parametrize("name", (*GOLDEN_EXAMPLE_FILES, "raw_payloads.tfrecord"))
def test_writer_reproduces_tensorflow_files_byte_for_byte(golden, tmp_path, name):
    source = golden / "tfrecord" / name
    compression = detect_compression(source)
    assert compression == ("GZIP" if name.endswith(".gz") else None)
    info = write_tfrecord(tmp_path / name, iter_records(source), compression=compression)
    assert (tmp_path / name).read_bytes() == source.read_bytes()
    assert info.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert info.bytes == source.stat().st_size


def test_masked_crc_matches_tensorflow_framing(golden):
    raw = (golden / "tfrecord" / "raw_payloads.tfrecord").read_bytes()
    assert raw[:12] == frame_header(0)                     # the empty record's header
    assert raw[12:16] == struct.pack("<I", masked_crc32c(b""))
    assert raw[16:37] == frame_record(b"hello")


def test_example_encoding_is_byte_identical_to_tensorflow(golden, expected):
    """TF writes map entries in hash order; given that order we reproduce its bytes exactly, and
    make_image_example writes keys sorted, as SerializeToString(deterministic=True) does."""
    for record in iter_records(golden / "tfrecord" / "examples.tfrecord"):
        features = decode_example(record)
        assert encode_example(features) == record
        image = parse_image_example(features)
        ours = make_image_example(image.encoded, label=image.label, height=image.height,
                                  width=image.width, text=image.text, format=image.format,
                                  filename=image.filename, extra=image.extra)
        assert ours == encode_example(dict(sorted(features.items())))
        assert decode_example(ours) == dict(sorted(features.items()))


# ------------------------------------------------------------------------ tf.train.Example codec

def test_every_feature_kind_round_trips():
    features = {
        "bytes": Feature.bytes_list([b"", b"\x00\xff", "text"]),
        "floats": Feature.float_list([0.5, -2.0, float("inf")]),
        "ints": Feature.int64_list([0, 1, -1, 2**63 - 1, -(2**63), 300]),
        "empty_ints": Feature.int64_list([]),
        "unset": Feature(None),
        "scalar": 7,
        "array": np.arange(4, dtype=np.float32),
    }
    decoded = decode_example(encode_example(features))
    assert decoded["bytes"].values == (b"", b"\x00\xff", b"text")
    assert decoded["floats"] == Feature(FLOAT_LIST, (0.5, -2.0, float("inf")))
    assert decoded["ints"] == features["ints"]
    assert decoded["empty_ints"] == Feature(INT64_LIST, ())
    assert decoded["unset"] == Feature(None)
    assert decoded["scalar"] == Feature(INT64_LIST, (7,))
    assert decoded["array"] == Feature(FLOAT_LIST, (0.0, 1.0, 2.0, 3.0))


def _entry(key: bytes, feature_body: bytes) -> bytes:
    entry = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(feature_body)]) + feature_body
    return b"\x0a" + bytes([len(entry)]) + entry


def _example(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return b"\x0a" + bytes([len(body)]) + body


def test_decoder_accepts_unpacked_repeated_numbers_and_skips_unknown_fields():
    unpacked_ints = b"\x08\x05\x08\x96\x01" + b"\x0a\x01\x07"      # 5, 150, then packed [7]
    unpacked_floats = b"\x0d" + struct.pack("<f", 1.5) + b"\x0d" + struct.pack("<f", -3.0)
    unknown = b"\x10\x01" + b"\x19" + bytes(8) + b"\x22\x02ab" + b"\x2d" + bytes(4)
    record = _example(
        _entry(b"ints", b"\x1a" + bytes([len(unpacked_ints)]) + unpacked_ints),
        _entry(b"floats", b"\x12" + bytes([len(unpacked_floats)]) + unpacked_floats),
    ) + unknown
    features = decode_example(record)
    assert features == {"ints": Feature(INT64_LIST, (5, 150, 7)),
                        "floats": Feature(FLOAT_LIST, (1.5, -3.0))}


def test_repeated_map_key_last_entry_wins():
    first = _entry(b"k", b"\x1a\x03\x0a\x01\x01")
    second = _entry(b"k", b"\x0a\x03\x0a\x01x")
    assert decode_example(_example(first, second)) == {"k": Feature(BYTES_LIST, (b"x",))}


def test_image_example_fast_path_matches_the_generic_encoder():
    jpeg = bytes(range(256)) * 600                       # over 128 KiB: multi-byte lengths
    fields = dict(label=1234, height=480, width=640, text="Yucca schidigera", format="png",
                  filename="Plantae/ü.jpg")
    parts = make_image_example_parts(jpeg, **fields)
    assert any(part is jpeg for part in parts)           # the image bytes are not copied
    record = b"".join(parts)
    assert record == make_image_example(jpeg, **fields)
    assert record == encode_example(dict(sorted(decode_example(record).items())))
    image = parse_image_example(record)
    assert (image.encoded, image.label, image.text, image.filename) == (
        jpeg, 1234, "Yucca schidigera", "Plantae/ü.jpg")
    assert image.extra == {}


def test_ambiguous_python_values_are_refused():
    with pytest.raises(TypeError, match="empty list"):
        to_feature([])
    with pytest.raises(TypeError, match="only"):
        to_feature([1, b"x"])
    with pytest.raises(ValueError, match="int64"):
        encode_example({"big": 2**64})
    with pytest.raises(ValueError, match="repeat standard"):
        make_image_example(b"x", label=0, height=1, width=1, extra={"image/height": 2})


def test_image_example_problems_name_source_and_offset():
    with pytest.raises(FormatError, match="image/encoded") as err:
        parse_image_example(encode_example({"image/class/label": 1}), source="f.tfrecord",
                            base_offset=12)
    assert (err.value.path, err.value.offset) == ("f.tfrecord", 12)
    with pytest.raises(FormatError, match="image/class/label"):
        parse_image_example(encode_example({"image/encoded": b"j", "image/class/label": [1, 2]}))


def test_truncated_example_points_at_the_bad_byte():
    record = make_image_example(b"\xff\xd8" * 50, label=3, height=2, width=2)
    with pytest.raises(FormatError, match="past the end") as err:
        decode_example(record[:40], source="f.tfrecord", base_offset=1000)
    assert err.value.path == "f.tfrecord" and 1000 <= err.value.offset < 1040


# ------------------------------------------------------------------------------------ reading

def _write_raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_corrupt_data_crc_names_file_and_record_offset(tmp_path):
    records = [b"a" * 10, b"b" * 20, b"c" * 30]
    data = bytearray(b"".join(frame_record(r) for r in records))
    second_at = len(frame_record(records[0]))
    data[second_at + 12 + 5] ^= 0x01
    path = _write_raw(tmp_path / "bad.tfrecord", bytes(data))
    with pytest.raises(FormatError, match="data CRC mismatch") as err:
        list(iter_records(path))
    assert (err.value.path, err.value.offset) == (str(path), second_at)
    assert len(list(iter_records(path, verify=False))) == 3      # skipping verification


def test_huge_length_is_refused_before_any_allocation(tmp_path):
    length = struct.pack("<Q", 1 << 60)
    header = length + struct.pack("<I", masked_crc32c(length))
    path = _write_raw(tmp_path / "huge.tfrecord", frame_record(b"ok") + header + b"x" * 100)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="only 100 are left") as err:
            list(iter_records(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.value.offset == 18 and peak < (4 << 20)


def test_truncated_gzip_file_is_a_format_error(golden, tmp_path):
    data = (golden / "tfrecord" / "examples_gzip.tfrecord.gz").read_bytes()
    path = _write_raw(tmp_path / "cut.tfrecord.gz", data[:len(data) // 2])
    with pytest.raises(FormatError, match="truncated") as err:
        list(iter_records(path, compression="GZIP"))
    assert err.value.path == str(path)


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_records_given_as_pieces_equal_records_given_whole(tmp_path, compression):
    records = [b"", b"small", bytes(range(256)) * 300, b"z" * (3 << 20)]   # < and > buffer sizes
    pieces = [[r[:7], r[7:100], r[100:]] for r in records]
    whole = write_tfrecord(tmp_path / "whole", records, compression)
    split = write_tfrecord(tmp_path / "split", pieces, compression)
    assert (tmp_path / "whole").read_bytes() == (tmp_path / "split").read_bytes()
    assert whole.sha256 == split.sha256 == hashlib.sha256(
        (tmp_path / "whole").read_bytes()).hexdigest()
    assert list(iter_records(tmp_path / "split")) == records


def test_batched_framing_is_byte_exact_across_batches_and_reused_buffers(tmp_path):
    """Small records are framed in ~1 MiB batches and large ones written alone: whatever the
    mix, the file is the records' frames back to back, the index lists each of them, and a
    caller may refill the buffer it passed as soon as write() returns."""
    rng = np.random.default_rng(0)
    records = [rng.bytes(int(n)) for n in rng.choice([0, 9, 4_000, 60_000, 70_000, 300_000],
                                                    size=80)]
    buffer = bytearray()
    with TFRecordWriter(tmp_path / "mixed.tfrecord", write_index=True, sha256=False) as writer:
        for record in records:
            buffer[:] = record
            writer.write([b"", memoryview(buffer)])
            buffer[:] = b"\x00" * len(record)        # reused before the batch is written
    info = writer.close()
    expected = b"".join(frame_record(r) for r in records)
    assert (tmp_path / "mixed.tfrecord").read_bytes() == expected
    assert info.sha256 is None and info.records == 80 and info.bytes == len(expected)
    assert info.index_path.read_text() == dali_tfrecord2idx(tmp_path / "mixed.tfrecord")


def test_sha256_is_optional_and_changes_nothing_else(tmp_path):
    payloads = _payloads(50)
    hashed = write_shards(payloads, bytes, tmp_path / "a", "train", 1500, seed=1)
    plain = write_shards(payloads, bytes, tmp_path / "b", "train", 1500, seed=1, sha256=False)
    assert plain.sha256_per_shard == [None] * len(plain.shards)
    assert [p.read_bytes() for p in plain.paths] == [p.read_bytes() for p in hashed.paths]
    assert hashed.sha256_per_shard == [hashlib.sha256(p.read_bytes()).hexdigest()
                                       for p in hashed.paths]


def test_concatenated_gzip_members_are_read_and_junk_after_them_refused(tmp_path):
    first, second = [b"one", b"two"], [b"x" * 5000]
    stream = (gzip.compress(b"".join(map(frame_record, first)))
              + gzip.compress(b"".join(map(frame_record, second))))
    path = _write_raw(tmp_path / "multi.tfrecord.gz", stream)
    assert list(iter_records(path)) == first + second
    junk = _write_raw(tmp_path / "junk.tfrecord.gz", stream + b"trailing junk")
    with pytest.raises(FormatError, match="junk after the end of the gzip stream") as err:
        list(iter_records(junk))
    assert err.value.offset == len(stream)


def test_unknown_compression_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="ZLIB"):
        TFRecordWriter(tmp_path / "x.tfrecord", compression="ZLIB")


# -------------------------------------------------------------------------------------- index

def test_index_is_what_dali_tfrecord2idx_writes(golden, tmp_path):
    for name in ("examples.tfrecord", "raw_payloads.tfrecord"):
        copy = _write_raw(tmp_path / name, (golden / "tfrecord" / name).read_bytes())
        index = write_index(copy)
        assert index == index_path_for(copy) and index.name == f"{name}.idx"
        assert index.read_text() == dali_tfrecord2idx(copy)
    with TFRecordWriter(tmp_path / "w.tfrecord", write_index=True) as writer:
        for payload in (b"", b"x" * 1000, b"yz"):
            writer.write(payload)
    assert writer.close().index_path.read_text() == dali_tfrecord2idx(tmp_path / "w.tfrecord")


def test_random_access_matches_sequential_reading(golden, tmp_path):
    path = _write_raw(tmp_path / "e.tfrecord",
                      (golden / "tfrecord" / "examples.tfrecord").read_bytes())
    sequential = list(iter_records(path))
    scanned = IndexedTFRecord(path)                           # no .idx yet: scans the file
    write_index(path)
    with IndexedTFRecord(path) as indexed:
        assert len(indexed) == len(scanned) == 7
        assert [indexed[i] for i in (6, 0, 3)] == [sequential[i] for i in (6, 0, 3)]
        assert indexed[-1] == sequential[-1] and list(indexed) == sequential
        with pytest.raises(IndexError):
            indexed[7]
        clone = pickle.loads(pickle.dumps(indexed))
        assert clone[2] == sequential[2]
        clone.close()
    scanned.close()


def test_stale_index_is_refused(tmp_path):
    path = tmp_path / "s.tfrecord"
    write_tfrecord(path, [b"one", b"two"], write_index=True)
    with open(path, "ab") as fh:
        fh.write(frame_record(b"three"))
    with pytest.raises(FormatError, match="covers 38 of the file's 59 bytes") as err:
        IndexedTFRecord(path)
    assert err.value.path == str(index_path_for(path))


def test_index_pointing_into_a_record_is_caught_on_read(tmp_path):
    path = tmp_path / "m.tfrecord"
    write_tfrecord(path, [b"x" * 40, b"y" * 40])
    index_path_for(path).write_text("0 28\n28 84\n")            # tiles the file, wrong records
    with IndexedTFRecord(path) as indexed:
        with pytest.raises(FormatError, match="length field says 56") as err:
            indexed[0]
    assert (err.value.path, err.value.offset) == (str(path), 0)


def test_gzip_files_have_no_index(golden, tmp_path):
    with pytest.raises(ConfigError, match="uncompressed"):
        TFRecordWriter(tmp_path / "x.tfrecord.gz", compression="GZIP", write_index=True)
    with pytest.raises(FormatError, match="GZIP"):
        scan_index(golden / "tfrecord" / "examples_gzip.tfrecord.gz")


# ------------------------------------------------------------------------------------- shards

def _payloads(count: int) -> list[bytes]:
    return [f"record-{i:04d}-".encode() + bytes([i % 251]) * (50 + 37 * (i % 7))
            for i in range(count)]


def test_shards_are_named_sized_indexed_and_summarized(tmp_path):
    payloads = _payloads(60)
    summary = write_shards(payloads, bytes, tmp_path, "train", target_shard_bytes=2000, seed=3)
    count = len(summary.shards)
    assert count > 3
    assert summary.paths == [tmp_path / shard_name("train", i, count) for i in range(count)]
    assert summary.paths[0].name == f"train-00000-of-{count:05d}.tfrecord"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in summary.paths] + [p.name + ".idx" for p in summary.paths])
    read_back = []
    for info in summary.shards:
        data = info.path.read_bytes()
        assert info.bytes == len(data) <= 2000
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        assert info.index_path.read_text() == dali_tfrecord2idx(info.path)
        shard_records = list(IndexedTFRecord(info.path))
        assert len(shard_records) == info.records
        read_back.extend(shard_records)
    assert summary.total_records == 60 and sorted(read_back) == sorted(payloads)
    assert read_back != payloads                                   # shuffled across shards
    assert json.loads(json.dumps(summary.as_dict()))["total_records"] == 60


def test_shuffle_is_reproducible_and_seed_none_keeps_order(tmp_path):
    payloads = _payloads(40)
    first = write_shards(payloads, bytes, tmp_path / "a", "train", 1500, seed=7)
    again = write_shards(payloads, bytes, tmp_path / "b", "train", 1500, seed=7)
    other = write_shards(payloads, bytes, tmp_path / "c", "train", 1500, seed=8)
    ordered = write_shards(payloads, bytes, tmp_path / "d", "train", 1500, seed=None)
    assert first.sha256_per_shard == again.sha256_per_shard
    assert first.sha256_per_shard != other.sha256_per_shard
    assert [r for p in ordered.paths for r in iter_records(p)] == payloads


def test_no_final_shard_exists_until_all_are_complete(tmp_path):
    payloads = _payloads(30)
    seen_during_write = []

    def to_record(payload: bytes) -> bytes:
        seen_during_write.append(sorted(p.name for p in tmp_path.glob("train-*")))
        return payload

    summary = write_shards(payloads, to_record, tmp_path, "train", 800, seed=None)
    assert len(summary.shards) > 3
    assert all(names == [] for names in seen_during_write)


def test_failure_mid_write_leaves_nothing_behind(tmp_path):
    previous = write_shards(_payloads(5), bytes, tmp_path, "train", 10_000, seed=None)

    def failing(payload: bytes) -> bytes:
        if payload.startswith(b"record-0020"):
            raise OSError("disk on fire")
        return payload

    with pytest.raises(OSError, match="disk on fire"):
        write_shards(_payloads(30), failing, tmp_path, "train", 800, seed=None)
    assert sorted(tmp_path.iterdir()) == sorted(
        [*previous.paths, *(p.with_name(p.name + ".idx") for p in previous.paths)])


def test_disk_error_surfaces_and_leaves_nothing_behind(tmp_path, monkeypatch):
    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ml.formats.tfrecord.writer.os.fsync", full_disk)
    with pytest.raises(DatasetError, match=r"train-00000[-of0-9]*\.tfrecord: finishing the file .*"
                                           r"no space left on device.*bytes free"):
        write_shards(_payloads(30), bytes, tmp_path, "train", 800, seed=None)
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_writing_names_the_file_and_the_free_space(tmp_path, full_disk):
    """A bare `OSError: [Errno 28]` before: now the shard, what failed and the space left."""
    with pytest.raises(DatasetError, match=r"train-00000[-of0-9]*\.tfrecord: writing after 0 bytes "
                                           r"failed \(no space left on device\); \d+ bytes free"):
        write_shards(_payloads(30), bytes, tmp_path, "train", 800, seed=None)
    assert list(tmp_path.iterdir()) == []


def test_large_records_shard_and_read_back(tmp_path):
    payloads = [b"a" * 100, bytes(range(256)) * 9000, b"b" * 70_000, b"c"]   # 2.3 MB, 70 kB
    summary = write_shards(payloads, bytes, tmp_path, "big", 2_350_000, seed=None)
    assert summary.records_per_shard == [2, 2]
    assert [r for p in summary.paths for r in IndexedTFRecord(p)] == payloads
    assert summary.sha256_per_shard == [hashlib.sha256(p.read_bytes()).hexdigest()
                                        for p in summary.paths]


def test_rewrite_with_fewer_shards_removes_the_stale_ones(tmp_path):
    many = write_shards(_payloads(30), bytes, tmp_path, "train", 800, seed=None)
    other_split = write_shards(_payloads(3), bytes, tmp_path, "val", 800, seed=None)
    few = write_shards(_payloads(30), bytes, tmp_path, "train", 100_000, seed=None)
    assert len(many.shards) > 1 and len(few.shards) == 1
    assert find_shards(tmp_path, "train") == few.paths
    assert find_shards(tmp_path, "val") == other_split.paths


def test_find_shards_refuses_a_partial_set(tmp_path):
    summary = write_shards(_payloads(30), bytes, tmp_path, "train", 800, seed=None)
    summary.paths[1].unlink()
    with pytest.raises(FormatError, match="missing shards"):
        find_shards(tmp_path, "train")
    with pytest.raises(FormatError, match="no shards"):
        find_shards(tmp_path, "test")


def test_oversized_records_get_their_own_shard_and_empty_split_one_empty_shard(tmp_path):
    summary = write_shards([b"s", b"L" * 5000, b"t"], bytes, tmp_path, "big", 1000, seed=None)
    assert summary.records_per_shard == [1, 1, 1]
    empty = write_shards([], bytes, tmp_path, "empty", 1000)
    assert empty.records_per_shard == [0] and empty.paths[0].read_bytes() == b""
    assert list(IndexedTFRecord(empty.paths[0])) == []


@pytest.mark.parametrize("split, target", [("../x", 100), ("", 100), ("train", 0)])
def test_bad_shard_settings_are_config_errors(tmp_path, split, target):
    with pytest.raises(ConfigError):
        ShardWriter(tmp_path, split, target)


@given(shards=st.integers(0, 40), num_workers=st.integers(1, 5), world_size=st.integers(1, 4),
       seed=st.one_of(st.none(), st.integers(0, 2**32 - 1)), epoch=st.integers(0, 3))
def test_shard_assignment_is_a_partition(shards, num_workers, world_size, seed, epoch):
    names = [f"s{i}" for i in range(shards)]
    parts = [assign_shards(names, w, num_workers, r, world_size, seed=seed, epoch=epoch)
             for r in range(world_size) for w in range(num_workers)]
    flat = [s for part in parts for s in part]
    assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shard_assignment_changes_with_epoch_and_refuses_bad_ids():
    names = [f"s{i}" for i in range(16)]
    assert (assign_shards(names, 0, 2, 0, 2, seed=1, epoch=0)
            != assign_shards(names, 0, 2, 0, 2, seed=1, epoch=1))
    for bad in [dict(worker_id=2, num_workers=2), dict(rank=-1), dict(world_size=0),
                dict(num_workers=True)]:
        args = dict(worker_id=0, num_workers=2, rank=0, world_size=1) | bad
        with pytest.raises(ConfigError):
            assign_shards(names, **args)


# ------------------------------------------------------------------- damaged files (properties)

VALID_RECORDS = [b"", b"hello", bytes(range(256)) * 3, make_image_example(
    b"\xff\xd8jpeg" * 20, label=4, height=8, width=8, text="class_4", filename="a/b.jpg")]
VALID_FILE = b"".join(frame_record(r) for r in VALID_RECORDS)
RECORD_STARTS = [len(b"".join(frame_record(r) for r in VALID_RECORDS[:i]))
                 for i in range(len(VALID_RECORDS))]
HOT = sorted({at + delta for at in RECORD_STARTS for delta in (0, 8, 12)})
INDEX_TEXT = "".join(f"{at} {len(frame_record(r))}\n"
                     for at, r in zip(RECORD_STARTS, VALID_RECORDS)).encode()


def _is_prefix_of_valid(records: list[bytes]) -> bool:
    return records == VALID_RECORDS[:len(records)]


@PROPERTY
@given(damaged=corrupted(VALID_FILE, hot=HOT), verify=st.booleans())
def test_damaged_file_is_a_format_error_with_file_and_offset(tmp_path, damaged, verify):
    assume(damaged != VALID_FILE)             # two flips of one byte can cancel out
    path = _write_raw(tmp_path / "d.tfrecord", damaged)
    try:
        records = list(iter_records(path, verify=verify))
    except FormatError as err:
        assert err.path == str(path) and 0 <= err.offset <= len(damaged)
        return
    if verify:           # every flip and every append is caught; a cut may end on a boundary
        assert len(damaged) < len(VALID_FILE) and _is_prefix_of_valid(records)


@PROPERTY
@given(damaged=corrupted(VALID_FILE, hot=HOT))
def test_damaged_file_under_an_intact_index_fails_loudly(tmp_path, damaged):
    assume(damaged != VALID_FILE)
    path = _write_raw(tmp_path / "d.tfrecord", damaged)
    index_path_for(path).write_bytes(INDEX_TEXT)
    with pytest.raises(FormatError) as err:
        with IndexedTFRecord(path) as indexed:
            list(indexed)
    assert err.value.path in (str(path), str(index_path_for(path)))


@PROPERTY
@given(damaged=corrupted(INDEX_TEXT))
def test_damaged_index_is_refused_or_harmless(tmp_path, damaged):
    path = _write_raw(tmp_path / "i.tfrecord", VALID_FILE)
    index_path_for(path).write_bytes(damaged)
    try:
        with IndexedTFRecord(path) as indexed:
            assert list(indexed) == VALID_RECORDS      # e.g. a flip to other whitespace
    except FormatError as err:
        assert err.path in (str(path), str(index_path_for(path)))
        assert err.offset is not None and err.offset >= 0


@pytest.fixture(scope="module")
def gzip_file(golden) -> bytes:
    return (golden / "tfrecord" / "examples_gzip.tfrecord.gz").read_bytes()


@PROPERTY
@given(data=st.data())
def test_damaged_gzip_file_is_a_format_error_or_unchanged(tmp_path, gzip_file, data):
    damaged = data.draw(corrupted(gzip_file, hot=(0, 3, 10, len(gzip_file) - 8)))
    path = _write_raw(tmp_path / "g.tfrecord.gz", damaged)
    original = list(iter_records(_write_raw(tmp_path / "ok.gz", gzip_file)))
    try:
        records = list(iter_records(path, compression="GZIP"))
    except FormatError as err:
        assert err.path == str(path) and err.offset >= 0
        return
    assert records == original               # only gzip header bytes zlib ignores were hit


@PROPERTY
@given(damaged=corrupted(VALID_RECORDS[-1], hot=(0, 2, 4, 30)))
def test_damaged_example_bytes_decode_or_raise_format_error(damaged):
    try:
        features = decode_example(damaged, source="x.tfrecord", base_offset=100)
    except FormatError as err:
        assert err.path == "x.tfrecord" and 100 <= err.offset <= 100 + len(damaged)
        return
    assert all(f.kind in (None, BYTES_LIST, FLOAT_LIST, INT64_LIST) for f in features.values())


def test_record_spans_report_framed_offsets(tmp_path):
    path = _write_raw(tmp_path / "v.tfrecord", VALID_FILE)
    spans = [(offset, size) for offset, size, _ in iter_record_spans(path)]
    assert spans == read_index(_write_raw(tmp_path / "v.idx", INDEX_TEXT), len(VALID_FILE))
