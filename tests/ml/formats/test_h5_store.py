from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

from ml.errors import DatasetError, FormatError
from ml.formats.h5_store import (
    H5Item, H5StoreBytesDataset, H5StoreReader, index_h5_store, meta_path_for, parse_member_key,
    write_h5_store)


def sha(data) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


@pytest.fixture(scope="module")
def golden_expected(golden) -> dict[str, str]:
    """member name -> sha256, from golden hdf5/expected.json."""
    doc = json.loads((golden / "hdf5" / "expected.json").read_text())["sequences.h5"]
    return {f["name"]: f["sha256"] for frames in doc["sequences"].values() for f in frames}


def golden_items(path) -> list[H5Item]:
    items = []
    with h5py.File(path, "r") as h5:
        for cls in h5:
            for name in h5[cls]:
                _, seq, frame = parse_member_key(f"{cls}/{name}")
                items.append(H5Item(cls, seq.split("/", 1)[1], frame, h5[cls][name][()].tobytes()))
    return items


def test_golden_store_is_indexed_from_its_names(golden, golden_expected):
    index = index_h5_store(golden / "hdf5" / "sequences.h5")
    assert index.keys == sorted(golden_expected)
    assert index.sequences == ["bottle/obj0", "bottle/obj1", "chair/obj0", "chair/obj1"]
    assert index.classes == ["bottle", "chair"]
    assert index.frame.tolist() == [0, 1, 2, 3, 4] * 4
    assert [list(index.sequence_rows(s)) for s in (0, 3)] == [[0, 1, 2, 3, 4],
                                                              [15, 16, 17, 18, 19]]
    assert index.sha256 is None
    reader = H5StoreReader(golden / "hdf5" / "sequences.h5")
    assert {k: sha(reader.read(i)) for i, k in enumerate(index.keys)} == golden_expected


def test_write_stores_solo_learn_layout_plus_sorted_meta(tmp_path, golden, golden_expected):
    items = golden_items(golden / "hdf5" / "sequences.h5")
    random.Random(0).shuffle(items)
    summary = write_h5_store(tmp_path / "store.h5", items)
    assert (summary.items, summary.sequences, summary.classes) == (20, 4, 2)
    assert summary.payload_bytes == sum(len(i.data) for i in items)

    with h5py.File(tmp_path / "store.h5", "r") as h5:      # plain h5py sees the golden layout
        members = {f"{c}/{n}": sha(h5[c][n][()]) for c in h5 for n in h5[c]}
        assert members == golden_expected
        assert h5["bottle/obj0_003.jpg"].dtype == np.uint8 and h5["bottle/obj0_003.jpg"].ndim == 1
    with h5py.File(meta_path_for(tmp_path / "store.h5"), "r") as meta:
        assert meta.attrs["format"] == "imageds.h5store"
    index = index_h5_store(tmp_path / "store.h5")
    assert index.keys == sorted(golden_expected)              # contiguous sequences, in frame order
    assert index.sha256 == [golden_expected[k] for k in index.keys]
    assert index.sequence_start.tolist() == [0, 5, 10, 15, 20]
    assert index.frame.tolist() == [0, 1, 2, 3, 4] * 4


def test_meta_orders_sequences_like_their_rows(tmp_path):
    # "a-b/x" sorts before "a/x" as text but class "a" comes before "a-b"
    items = [H5Item("a-b", "x", 0, b"1"), H5Item("a", "x", 1, b"2"), H5Item("a", "x", 0, b"3")]
    write_h5_store(tmp_path / "s.h5", items)
    index = index_h5_store(tmp_path / "s.h5")
    assert index.keys == ["a/x_000.jpg", "a/x_001.jpg", "a-b/x_000.jpg"]
    assert index.sequences == ["a/x", "a-b/x"] and index.sequence.tolist() == [0, 0, 1]


@pytest.mark.parametrize("item, problem", [
    (H5Item("_meta", "o", 0, b"x"), "reserved"),
    (H5Item("cls/sub", "o", 0, b"x"), "without '/'"),
    (H5Item("cls", "", 0, b"x"), "non-empty"),
    (H5Item("cls", "o", -1, b"x"), "non-negative"),
    (H5Item("cls", "o", 0, b""), "no image bytes"),
    (H5Item("cls", "o", 0, b"x", ext="j/pg"), "alphanumeric"),
])
def test_bad_items_are_refused_and_nothing_is_written(tmp_path, item, problem):
    with pytest.raises(DatasetError, match=problem):
        write_h5_store(tmp_path / "s.h5", [H5Item("ok", "o", 0, b"x"), item])
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_store(tmp_path):
    write_h5_store(tmp_path / "s.h5", [H5Item("c", "o", 0, b"old")])

    def items():
        yield H5Item("c", "o", 0, b"new")
        yield H5Item("c", "o", 0, b"again")            # duplicate key

    with pytest.raises(DatasetError, match="given twice"):
        write_h5_store(tmp_path / "s.h5", items())
    assert bytes(H5StoreReader(tmp_path / "s.h5").read(0)) == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5", "s.h5.meta.h5"]


def test_unreadable_files_and_missing_members_are_format_errors(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(FormatError, match="not a readable HDF5 file"):
        index_h5_store(tmp_path / "junk.h5")
    with pytest.raises(FormatError, match="no such HDF5 store"):
        index_h5_store(tmp_path / "absent.h5")
    write_h5_store(tmp_path / "s.h5", [H5Item("c", "o", 0, b"a"), H5Item("c", "o", 1, b"b")])
    reader = H5StoreReader(tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5", "a") as h5:
        del h5["c/o_001.jpg"]
    with pytest.raises(FormatError, match="changed after it was indexed"):
        reader.read(1)
    slow = H5StoreReader(tmp_path / "s.h5")
    slow.index.keys[0] = "c/o_009.jpg"            # a member the file never had (h5py path)
    object.__setattr__(slow.index, "offsets", None)
    with pytest.raises(FormatError, match="'c/o_009.jpg' listed in the index is missing"):
        slow.read(0)


def test_inconsistent_meta_is_a_format_error(tmp_path):
    write_h5_store(tmp_path / "s.h5", [H5Item("c", "o", 0, b"a"), H5Item("c", "p", 0, b"b")])
    with h5py.File(meta_path_for(tmp_path / "s.h5"), "a") as meta:
        meta["sequence"][...] = [1, 0]
    with pytest.raises(FormatError, match="disagree"):
        index_h5_store(tmp_path / "s.h5")


def test_reader_reopens_after_fork_and_never_uses_the_parents_handle(golden, golden_expected):
    reader = H5StoreReader(golden / "hdf5" / "sequences.h5")
    reader.read(0)
    parent_handle = reader.handle()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:                                           # child: report, then exit hard
        try:
            ok = all(sha(reader.read(i)) == golden_expected[k]
                     for i, k in enumerate(reader.index.keys))
            ok = ok and reader.handle() is not parent_handle
            os.write(write_fd, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    assert os.read(read_fd, 1) == b"1"
    os.close(read_fd)
    assert reader.handle() is parent_handle                # the parent's stays as it was


def test_each_thread_gets_its_own_handle(golden, golden_expected):
    reader = H5StoreReader(golden / "hdf5" / "sequences.h5")
    all_started = threading.Barrier(4)                     # four threads, all at once

    def read_all(_):
        all_started.wait(timeout=10)
        return reader.handle(), [sha(reader.read(i)) for i in range(len(reader))]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(read_all, range(4)))
    assert len({id(handle) for handle, _ in results}) == 4
    expected = [golden_expected[k] for k in reader.index.keys]
    assert all(shas == expected for _, shas in results)


def test_pickled_reader_carries_no_handle(golden):
    reader = H5StoreReader(golden / "hdf5" / "sequences.h5")
    reader.read(0)
    clone = pickle.loads(pickle.dumps(reader))
    assert not hasattr(clone._local, "file")
    assert bytes(clone.read(0)) == bytes(reader.read(0))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_return_every_sample_once(golden, golden_expected, context):
    torch_data = pytest.importorskip("torch.utils.data")
    dataset = H5StoreBytesDataset(golden / "hdf5" / "sequences.h5")
    dataset.reader.read(0)                     # the parent holds an open handle when workers start
    loader = torch_data.DataLoader(dataset, batch_size=None, num_workers=2,
                                   multiprocessing_context=context)
    seen = {}
    for data, index in loader:
        assert index not in seen
        seen[index] = sha(data.numpy())
    keys = dataset.reader.index.keys
    assert sorted(seen) == list(range(len(keys)))
    assert {keys[i]: digest for i, digest in seen.items()} == golden_expected


def test_members_are_read_as_byte_spans_equal_to_h5py(tmp_path, golden):
    """The fast path (one pread per member) returns exactly h5py's bytes: spans from the metadata for
    stores we write, looked up once per member for stores written by other tools."""
    items = [H5Item("c", f"o{k}", f, bytes([k, f]) * (50 + 7 * f)) for k in range(3)
             for f in range(4)]
    write_h5_store(tmp_path / "ours.h5", items)
    for path in (tmp_path / "ours.h5", golden / "hdf5" / "sequences.h5"):
        reader = H5StoreReader(path)
        with h5py.File(path, "r") as h5:
            for i, key in enumerate(reader.index.keys):
                assert reader.span(i) is not None
                data = reader.read(i)
                assert data.dtype == np.uint8 and data.flags.writeable
                assert data.tobytes() == h5[key][()].tobytes()
        reader.close()
    assert H5StoreReader(tmp_path / "ours.h5").index.offsets is not None     # from the sidecar


def test_a_meta_offset_past_the_end_is_a_format_error(tmp_path):
    write_h5_store(tmp_path / "s.h5", [H5Item("c", "o", 0, b"abc")])
    with h5py.File(meta_path_for(tmp_path / "s.h5"), "a") as meta:
        meta["offset"][...] = [10 ** 9]
    with pytest.raises(FormatError, match="points past the end"):
        index_h5_store(tmp_path / "s.h5")


def solo_learn_walk(path) -> list[tuple[str, int]]:
    """solo-learn's H5Dataset as it reads a store: every top-level name, sorted, is a class
    (label = its position), each member of a class is an image decoded from its bytes."""
    import io

    from PIL import Image

    items = []
    with h5py.File(path, "r") as h5:
        classes = sorted(h5.keys())
        for y, class_name in enumerate(classes):
            for img_name in h5[class_name].keys():
                data = h5[class_name][img_name][:]
                Image.open(io.BytesIO(data)).convert("RGB")     # every member must decode
                items.append((f"{class_name}/{img_name}", y))
    return items


def test_solo_learn_reads_our_store_with_the_right_labels(tmp_path, golden, golden_expected):
    """Before the sidecar, /_meta was a top-level group: solo-learn took it as class 0, failed
    to decode its arrays as images and shifted every real label by one."""
    write_h5_store(tmp_path / "store.h5", golden_items(golden / "hdf5" / "sequences.h5"))
    walked = solo_learn_walk(tmp_path / "store.h5")
    assert sorted(k for k, _ in walked) == sorted(golden_expected)
    assert {k.split("/")[0]: y for k, y in walked} == {"bottle": 0, "chair": 1}
    index = index_h5_store(tmp_path / "store.h5")
    assert index.sha256 is not None and index.offsets is not None     # ours still has its metadata


def test_store_with_in_file_meta_from_before_the_sidecar_is_still_read(tmp_path):
    write_h5_store(tmp_path / "s.h5", [H5Item("c", "o", 0, b"abc"), H5Item("c", "o", 1, b"de")])
    meta_file = meta_path_for(tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5", "a") as h5, h5py.File(meta_file, "r") as meta:
        meta.copy(meta["/"], h5, name="_meta")
    meta_file.unlink()
    index = index_h5_store(tmp_path / "s.h5")
    assert index.keys == ["c/o_000.jpg", "c/o_001.jpg"] and index.sha256 is not None
    assert H5StoreReader(tmp_path / "s.h5").read(1).tobytes() == b"de"


def test_a_sidecar_of_another_store_is_ignored(tmp_path):
    write_h5_store(tmp_path / "s.h5", [H5Item("c", "o", 0, b"abc")])
    with h5py.File(tmp_path / "s.h5", "a") as h5:                      # rewritten by another tool
        h5.create_dataset("c/o_001.jpg", data=np.frombuffer(b"xyz" * 1000, np.uint8))
    index = index_h5_store(tmp_path / "s.h5")
    assert index.keys == ["c/o_000.jpg", "c/o_001.jpg"] and index.sha256 is None


def test_damaged_hdf5_metadata_is_a_format_error_naming_the_file(tmp_path):
    """h5py raised RuntimeError('Object visitation failed') from deep inside."""
    items = [H5Item(f"c{c}", f"o{o}", f, bytes([o, f]) * 100) for c in range(3)
             for o in range(3) for f in range(3)]
    write_h5_store(tmp_path / "s.h5", items)
    meta_path_for(tmp_path / "s.h5").unlink()
    data = bytearray((tmp_path / "s.h5").read_bytes())
    data[128:144] = b"\xff" * 16                      # the root group's B-tree
    (tmp_path / "s.h5").write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"s\.h5.*damaged"):
        index_h5_store(tmp_path / "s.h5")


def test_a_file_in_another_layout_says_which_layout_was_expected(tmp_path):
    with h5py.File(tmp_path / "flat.h5", "w") as h5:
        h5.create_dataset("img0.jpg", data=np.frombuffer(b"abc", np.uint8))
        h5.create_dataset("images", data=np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(FormatError, match=r"flat\.h5.*expected layout.*/<class>/<object>_<frame>"):
        index_h5_store(tmp_path / "flat.h5")
