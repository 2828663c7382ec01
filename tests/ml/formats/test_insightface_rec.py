"""insightface face .rec layouts: golden legacy and RecBuilder indexes, legacy writer, damage."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.errors import FormatError, ImageError
from ml.formats.insightface_rec import (
    LEGACY, RECBUILDER, detect_layout, open_face_rec, read_property, write_insightface_legacy)
from ml.formats.recordio import MAGIC_BYTES, RecordIOReader
from tests.conftest import golden_root
from tests.ml.corruption import corrupted

FILES = ("train.rec", "train.idx", "property")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def expected(golden) -> dict:
    return json.loads((golden / "recordio" / "expected.json").read_text())


def golden_items(folder: Path) -> list[tuple[bytes, int]]:
    index = open_face_rec(folder)
    return [(index.read_image(k), int(l)) for k, l in zip(index.image_keys, index.labels)]


def test_legacy_golden_index(golden, expected):
    want = expected["insightface_legacy"]
    index = open_face_rec(golden / "recordio" / "insightface_legacy")
    assert index.layout == LEGACY
    assert index.image_keys.tolist() == [img["key"] for img in want["images"]]
    assert index.labels.dtype == np.int64
    assert index.labels.tolist() == [img["label"] for img in want["images"]]
    assert index.identity_ranges.tolist() == want["identity_ranges"]
    assert (index.num_classes, index.image_size) == (want["num_identities"], (112, 112))
    assert [sha(index.read_image(img["key"])) for img in want["images"]] == \
        [img["payload_sha256"] for img in want["images"]]


def test_recbuilder_golden_index(golden):
    folder = golden / "recordio" / "insightface_recbuilder"
    want = json.loads((folder / "expected.json").read_text())
    index = open_face_rec(folder / "train.rec")                # a .rec path works too
    assert index.layout == RECBUILDER and len(index) == want["num_images"]
    assert index.image_keys.tolist() == list(range(want["num_images"]))
    assert np.bincount(index.labels).tolist() == want["images_per_identity"]
    assert index.num_classes == len(want["images_per_identity"])
    assert np.diff(index.identity_ranges, axis=1).ravel().tolist() == want["images_per_identity"]
    assert read_property(folder / "property").num_images == want["num_images"]
    assert index.read_image(0)[:2] == b"\xff\xd8"


def test_detect_layout(golden):
    assert detect_layout(golden / "recordio" / "insightface_legacy") == LEGACY
    assert detect_layout(golden / "recordio" / "insightface_recbuilder") == RECBUILDER


def test_labels_come_from_headers_not_images(golden):
    folder = golden / "recordio" / "insightface_legacy"
    real = os.pread
    asked: list[int] = []

    def counting(fd: int, count: int, offset: int) -> bytes:
        asked.append(count)
        return real(fd, count, offset)

    with mock.patch("os.pread", counting):
        index = open_face_rec(folder)
    assert len(index) == 10
    assert max(asked) <= 8 + 24 + 16 * 4 and sum(asked) < 2000   # the .rec is 27 kB


def test_rewrite_legacy_is_byte_identical(golden, tmp_path):
    source = golden / "recordio" / "insightface_legacy"
    summary = write_insightface_legacy(tmp_path / "out", golden_items(source))
    for name in FILES:
        assert (tmp_path / "out" / name).read_bytes() == (source / name).read_bytes(), name
    rec = (source / "train.rec").read_bytes()
    assert (summary.num_images, summary.num_identities) == (10, 4)
    assert (summary.rec_bytes, summary.rec_sha256) == (len(rec), sha(rec))
    assert summary.identity_labels == (0, 1, 2, 3)


def test_writer_groups_by_label_and_reads_paths(golden, tmp_path):
    items = golden_items(golden / "recordio" / "insightface_recbuilder")
    paths = []
    for n, (payload, label) in enumerate(items):
        path = tmp_path / "faces" / f"{n}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(payload)
        paths.append((path, f"person-{label}"))
    interleaved = paths[::2] + paths[1::2]                 # not grouped on input
    summary = write_insightface_legacy(tmp_path / "out", interleaved, image_size=(96, 80))
    index = open_face_rec(tmp_path / "out")
    assert index.layout == LEGACY and index.image_size == (96, 80)
    assert summary.identity_labels == ("person-0", "person-1", "person-2")
    assert np.bincount(index.labels).tolist() == [2, 3, 4]
    for (start, end), label in zip(index.identity_ranges.tolist(), range(3)):
        assert (index.labels[start - 1:end - 1] == label).all()
    written = sorted(sha(index.read_image(k)) for k in index.image_keys.tolist())
    assert written == sorted(sha(p) for p, _ in items)


def test_shuffle_is_seeded(golden, tmp_path):
    items = golden_items(golden / "recordio" / "insightface_legacy")
    first = write_insightface_legacy(tmp_path / "a", items, shuffle_seed=7)
    again = write_insightface_legacy(tmp_path / "b", items, shuffle_seed=7)
    other = write_insightface_legacy(tmp_path / "c", items, shuffle_seed=8)
    plain = write_insightface_legacy(tmp_path / "d", items)
    assert first.rec_sha256 == again.rec_sha256
    assert len({first.rec_sha256, other.rec_sha256, plain.rec_sha256}) == 3
    index = open_face_rec(tmp_path / "a")
    original = dict((sha(p), label) for p, label in items)
    for key, label in zip(index.image_keys.tolist(), index.labels.tolist()):
        assert first.identity_labels[label] == original[sha(index.read_image(key))]


def test_failed_write_keeps_previous_dataset(golden, tmp_path):
    items = golden_items(golden / "recordio" / "insightface_legacy")
    write_insightface_legacy(tmp_path / "out", items)
    before = {name: (tmp_path / "out" / name).read_bytes() for name in FILES}
    with pytest.raises(ImageError, match="missing.jpg"):
        write_insightface_legacy(tmp_path / "out", items + [(tmp_path / "missing.jpg", 9)])
    assert {name: (tmp_path / "out" / name).read_bytes() for name in FILES} == before
    # nothing left of the failed write: `out` and the one published version it points at
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [(tmp_path / "out").resolve().name, "out"])


def test_property_must_match_labels(golden_copy):
    folder = golden_copy("recordio/insightface_recbuilder")
    (folder / "property").write_text("2,112,112\n9\n")
    with pytest.raises(FormatError, match="says 2 classes but an image has label 2"):
        open_face_rec(folder)
    (folder / "property").write_text("3,112,112\n8\n")
    with pytest.raises(FormatError, match="says 8 images but train.rec holds 9"):
        open_face_rec(folder)
    (folder / "property").write_text("3;112\n")
    with pytest.raises(FormatError, match="bad property file"):
        open_face_rec(folder)
    (folder / "train.idx").unlink()
    with pytest.raises(FormatError, match="train.idx.*missing"):
        open_face_rec(folder)


def _damage_targets() -> list[tuple[str, str]]:
    return [(layout, name) for layout in ("insightface_legacy", "insightface_recbuilder")
            for name in FILES]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), target=st.sampled_from(_damage_targets()))
def test_damaged_face_rec_raises_only_format_error(tmp_path_factory, data, target):
    layout, damaged = target
    folder = tmp_path_factory.mktemp("face_damage", numbered=True)
    source = golden_root() / "recordio" / layout
    for name in FILES:
        content = (source / name).read_bytes()
        if name == damaged:
            rec = (source / "train.rec").read_bytes()
            hot = [i + 4 for i in range(0, len(rec) - 3, 4) if rec[i:i + 4] == MAGIC_BYTES]
            content = data.draw(corrupted(content, hot if name == "train.rec" else ()))
        (folder / name).write_bytes(content)
    try:
        index = open_face_rec(folder)
        assert len(index.labels) == len(index.image_keys)
        with RecordIOReader(folder / "train.rec") as reader:
            assert set(index.image_keys.tolist()) <= set(reader.keys.tolist())
    except FormatError as err:
        assert Path(err.path).parent == folder and Path(err.path).name in FILES
