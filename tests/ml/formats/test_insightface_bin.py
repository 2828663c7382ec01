from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import pickletools
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ml.errors import DatasetError, FormatError, ImageError
from ml.formats.insightface_bin import (
    DATANAME_CODES, build_validation_memfile, companion_paths, load_insightface_bin,
    open_validation_memfile, write_insightface_bin)
from ml.formats.memfile import open_memfile
from tests.ml.corruption import corrupted

GOLDEN_BINS = ("pairs_protocol4.bin", "pairs_protocol2.bin", "pairs_py2.bin")
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def jpeg(color: tuple[int, int, int], size: int = 112) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, "JPEG", quality=95)
    return out.getvalue()


# ------------------------------------------------------------------------------- loading

@pytest.mark.parametrize("name", GOLDEN_BINS)
def test_golden_bins_load_as_expected(golden, name):
    expected = json.loads((golden / "bin" / "expected.json").read_text())
    loaded = load_insightface_bin(golden / "bin" / name)
    assert loaded.n_pairs == expected["pairs"]
    assert loaded.issame == expected["issame"]
    assert [sha(b) for b in loaded.images] == expected["image_sha256"]
    assert all(type(b) is bytes for b in loaded.images)


def test_hostile_bin_is_refused_and_nothing_runs(golden, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # where `touch PWNED_BY_PICKLE` would land
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd) or 0)
    with pytest.raises(FormatError) as err:
        load_insightface_bin(golden / "bin" / "hostile.bin")
    assert err.value.path == str(golden / "bin" / "hostile.bin")
    assert "forbidden global 'posix.system'" in err.value.problem
    assert err.value.offset == 30                    # the STACK_GLOBAL opcode
    assert calls == [] and not (tmp_path / "PWNED_BY_PICKLE").exists()


@pytest.mark.parametrize("payload, forbidden", [
    (pickle.dumps(([b"a", bytearray(b"b")], [True]), protocol=4), "builtins.bytearray"),
    (pickle.dumps(([b"", b"x"], [True]), protocol=2), "__builtin__.bytes"),
    (b"\x80\x02c__builtin__\neval\nX\x04\x00\x00\x001+1\x85R.", "__builtin__.eval"),
    # protocol 0's INST names the callable inline: "(S'ls'\nisubprocess\nPopen\n."
    (b"(S'ls'\nisubprocess\nPopen\n.", "subprocess.Popen"),
])
def test_every_global_but_codecs_encode_is_refused(tmp_path, payload, forbidden):
    (tmp_path / "x.bin").write_bytes(payload)
    with pytest.raises(FormatError, match=f"forbidden global '{forbidden}'"):
        load_insightface_bin(tmp_path / "x.bin")


@pytest.mark.parametrize("payload, problem", [
    (pickle.dumps(({"a": 1}, [True]), protocol=4), "opcode EMPTY_DICT is not allowed"),
    (pickle.dumps(([b"a", b"b"], [0.5]), protocol=4), "opcode BINFLOAT is not allowed"),
    (pickle.dumps(([b"a", b"b", b"c"], [True]), protocol=4), "3 images for 1 pairs"),
    (pickle.dumps(([b"a", "b"], [True]), protocol=4), "bins[1] is a str"),
    (pickle.dumps(([b"a", b"b"], [2]), protocol=4), "issame_list[0]"),
    (pickle.dumps([b"a"], protocol=4), "expected a pickled (bins, issame_list)"),
    (pickle.dumps(([b"a", b"b"], [True]), protocol=4) + b"junk", "4 bytes of trailing data"),
    (pickle.dumps(([b"a", b"b"], [True]), protocol=4)[:-1], "exhausted before seeing STOP"),
])
def test_wrong_structure_is_a_format_error(tmp_path, payload, problem):
    (tmp_path / "x.bin").write_bytes(payload)
    with pytest.raises(FormatError) as err:
        load_insightface_bin(tmp_path / "x.bin")
    assert err.value.path == str(tmp_path / "x.bin") and problem in err.value.problem


@pytest.mark.parametrize("opcode, width", [(b"\x8e", "<Q"), (b"B", "<I"), (b"\x8d", "<Q"),
                                           (b"\x8b", "<i")])
def test_a_corrupt_length_allocates_nothing(tmp_path, opcode, width):
    # BINBYTES8 / BINBYTES / BINUNICODE8 / LONG4 claiming ~2 GiB .. 2**62 bytes, 10 present:
    # pickle.loads would allocate the claimed size before noticing the file is short.
    length = 2**62 if width == "<Q" else 2**31 - 1
    (tmp_path / "x.bin").write_bytes(b"\x80\x04" + opcode + struct.pack(width, length) + b"x" * 10)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="corrupt pickle") as err:
            load_insightface_bin(tmp_path / "x.bin")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.value.offset == 2 and peak < 1 << 20


@settings(max_examples=60, deadline=None)
@given(images=st.lists(st.binary(min_size=1, max_size=40), min_size=0, max_size=8)
       .filter(lambda xs: len(xs) % 2 == 0),
       flags=st.data(), protocol=st.integers(0, 5))
def test_every_protocol_round_trips(tmp_path_factory, images, flags, protocol):
    issame = flags.draw(st.lists(st.booleans(), min_size=len(images) // 2,
                                 max_size=len(images) // 2))
    path = tmp_path_factory.mktemp("bins") / "x.bin"
    path.write_bytes(pickle.dumps((images, issame), protocol=protocol))
    loaded = load_insightface_bin(path)
    assert loaded.images == images and loaded.issame == issame


def test_protocol_5_bytearrays_load_as_bytes(tmp_path):
    (tmp_path / "x.bin").write_bytes(
        pickle.dumps(([bytearray(b"ab"), b"cd"], [False]), protocol=5))
    assert load_insightface_bin(tmp_path / "x.bin").images == [b"ab", b"cd"]


def test_write_then_load(tmp_path, golden):
    src = load_insightface_bin(golden / "bin" / "pairs_py2.bin")
    write_insightface_bin(tmp_path / "lfw.bin", src.images, src.issame)
    again = load_insightface_bin(tmp_path / "lfw.bin")
    assert again.images == src.images and again.issame == src.issame
    with pytest.raises(DatasetError, match="two images per pair"):
        write_insightface_bin(tmp_path / "bad.bin", src.images[:3], src.issame)


def _opcode_offsets(data: bytes) -> list[int]:
    return [pos for _, _, pos in pickletools.genops(data)]


SMALL = pickle.dumps(([b"\xff\xd8img%d" % i for i in range(6)], [True, False, True]), protocol=4)
SMALL_P2 = pickle.dumps(([b"\xff\xd8img%d" % i for i in range(4)], [True, False]), protocol=2)
SMALL_P0 = pickle.dumps(([b"ab", b"cd"], [True]), protocol=0)


def _damaged_bins():
    return st.one_of(*(corrupted(data, hot=_opcode_offsets(data))
                       for data in (SMALL, SMALL_P2, SMALL_P0)))


@FAST
@given(damaged=_damaged_bins())
def test_damaged_bins_raise_only_format_error_without_big_allocations(tmp_path, damaged):
    path = tmp_path / "x.bin"
    path.write_bytes(damaged)
    tracemalloc.start()
    try:
        loaded = load_insightface_bin(path)
    except FormatError as err:
        assert err.path == str(path)
        assert err.offset is None or 0 <= err.offset <= len(damaged)
    else:
        assert len(loaded.images) == 2 * loaded.n_pairs
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 64 * 1024 + 100 * len(damaged)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_golden_bin_raises_only_format_error(tmp_path, golden, data):
    clean = (golden / "bin" / data.draw(st.sampled_from(GOLDEN_BINS))).read_bytes()
    damaged = data.draw(corrupted(clean, hot=_opcode_offsets(clean)))
    (tmp_path / "g.bin").write_bytes(damaged)
    try:
        load_insightface_bin(tmp_path / "g.bin")
    except FormatError as err:
        assert err.path == str(tmp_path / "g.bin")


# ------------------------------------------------------------------- validation memfiles

def test_build_validation_memfile_from_bins_and_arrays(tmp_path, golden):
    lfw = load_insightface_bin(golden / "bin" / "pairs_protocol4.bin")
    cfp = load_insightface_bin(golden / "bin" / "pairs_py2.bin")
    small = np.full((50, 60, 3), 200, np.uint8)                 # resized to 112
    custom = ([small, small, jpeg((10, 20, 30)), jpeg((10, 20, 30))], [True, False])
    messages: list[str] = []
    summary = build_validation_memfile(tmp_path / "val.dat",
                                       {"lfw": lfw, "cfp_fp": (cfp.images, cfp.issame),
                                        "mine": custom}, emit=messages.append)

    assert summary.n_images == 28 and summary.n_pairs == 14
    assert [(s.name, s.code, s.start, s.images) for s in summary.sets] == \
        [("lfw", 2, 0, 12), ("cfp_fp", 1, 12, 12), ("mine", 5, 24, 4)]
    val = open_validation_memfile(tmp_path / "val.dat")
    assert val.images.shape == (28, 3, 112, 112) and val.images.dtype == np.float32
    assert not val.images.flags.writeable
    assert val.dataname.tolist() == [2] * 12 + [1] * 12 + [5] * 4
    assert val.issame.tolist() == [s for s in lfw.issame + cfp.issame + [True, False]
                                   for _ in (0, 1)]
    assert val.dataname_to_idx == {"lfw": 2, "cfp_fp": 1, "mine": 5}
    assert -1.0 <= val.images.min() and val.images.max() <= 1.0
    np.testing.assert_allclose(val.images[24], (200 / 255 - 0.5) / 0.5, atol=1e-6)
    paths = companion_paths(tmp_path / "val.dat")
    assert summary.images.sha256 == sha(paths["images"].read_bytes())
    assert summary.total_bytes == 28 * 3 * 112 * 112 * 4 + 28 + 28 * 8
    names = json.loads(paths["names"].read_text())
    assert names["sets"][2] == {"name": "mine", "code": 5, "start": 24, "images": 4, "pairs": 2}
    assert messages and "28/28" in messages[-1]


def adaface_get_val_pair_issame(path, name):
    """AdaFace's evaluate_utils.get_val_pair reads a set's issame beside its memfile as
    np.load('{}/{}_list.npy'.format(path, name))."""
    return np.load("{}/{}_list.npy".format(path, name))


def test_adaface_finds_each_sets_issame_beside_the_memfile_and_a_bin_path_is_a_set(tmp_path,
                                                                                 golden):
    lfw = load_insightface_bin(golden / "bin" / "pairs_protocol4.bin")
    custom = ([jpeg((1, 2, 3))] * 4, [False, True])
    # a .bin given by path (a ValueError from tuple unpacking before), beside loaded sets
    build_validation_memfile(tmp_path / "concat_validation_memfile",
                             {"lfw": golden / "bin" / "pairs_py2.bin", "agedb_30": lfw,
                              "mine": custom})
    for name, issame in (("lfw", lfw.issame), ("agedb_30", lfw.issame), ("mine", [False, True])):
        loaded = adaface_get_val_pair_issame(tmp_path, name)
        assert loaded.dtype == bool and loaded.tolist() == issame
    val = open_validation_memfile(tmp_path / "concat_validation_memfile")
    assert val.issame.tolist() == [s for s in lfw.issame + lfw.issame + [False, True]
                                   for _ in (0, 1)]
    with pytest.raises(DatasetError, match="'x': expected a .bin path"):
        build_validation_memfile(tmp_path / "y.dat", {"x": 42})


def test_float32_matches_torchvision_and_uint8_is_raw(tmp_path, golden):
    from torchvision import transforms

    lfw = load_insightface_bin(golden / "bin" / "pairs_protocol4.bin")
    build_validation_memfile(tmp_path / "f.dat", {"lfw": lfw})
    build_validation_memfile(tmp_path / "u.dat", {"agedb_30": lfw}, dtype="uint8")
    pil = Image.open(io.BytesIO(lfw.images[3])).convert("RGB")
    seed_transform = transforms.Compose([transforms.ToTensor(),
                                         transforms.Normalize([0.5] * 3, [0.5] * 3)])
    np.testing.assert_array_equal(open_memfile(tmp_path / "f.dat")[3],
                                  seed_transform(pil).numpy())
    raw = open_validation_memfile(tmp_path / "u.dat")
    np.testing.assert_array_equal(raw.images[3], np.asarray(pil).transpose(2, 0, 1))
    assert raw.dataname_to_idx == {"agedb_30": DATANAME_CODES["agedb_30"]}


def test_undecodable_image_names_the_set_and_leaves_nothing(tmp_path):
    sets = {"lfw": ([jpeg((1, 2, 3)), b"not an image"], [True])}
    with pytest.raises(ImageError, match=r"lfw\[1\]"):
        build_validation_memfile(tmp_path / "val.dat", sets)
    assert list(tmp_path.iterdir()) == []


def test_unequal_images_and_pairs_or_bad_dtype_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="'lfw': 3 images for 1 pairs"):
        build_validation_memfile(tmp_path / "v", {"lfw": ([b"a", b"b", b"c"], [True])})
    with pytest.raises(DatasetError, match="dtype 'float64'"):
        build_validation_memfile(tmp_path / "v", {}, dtype="float64")
