"""Catalog sources: every kind, the golden label files, and every bad input of the issue."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import ml.catalog as catalog_mod
from ml.columns import text_column
from ml.catalog import build_catalog, sample_id_for
from ml.dataset_spec import load_datasets, parse_datasets
from ml.errors import ConfigError, PathEscapeError, SourceError
from ml.formats.insightface_rec import open_face_rec
from ml.partitions import partition_codes, partition_keys


def spec_for(tmp_path, kind, source, **extra):
    doc = {"datasets": [{"name": "d", "kind": kind, "source": source, **extra}]}
    return parse_datasets(doc, tmp_path / "datasets.yaml", base_dir=tmp_path).datasets[0]


def jpeg(path: Path, size=(40, 30), colour=(200, 100, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


def test_image_folder_labels_ids_and_sizes(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(3):
            jpeg(tmp_path / "root" / cls / f"{i}.jpg", size=(40 + i, 30))
    (tmp_path / "root" / "notes.txt").write_text("ignored")
    spec = spec_for(tmp_path, "image_folder", {"root": "root"})
    frame = build_catalog(spec).frame
    assert len(frame) == 6
    assert sorted(frame["label"].unique()) == ["cat", "dog"]
    assert set(frame["label_index"]) == {0, 1}
    assert (frame["status"] == "ok").all() and frame["width"].min() == 40
    assert frame["bytes"].min() > 0
    # ids are stable: they depend on the identifier only, not on where the dataset lives
    assert frame.loc[0, "sample_id"] == sample_id_for("cat/0.jpg")
    moved = tmp_path / "elsewhere"
    os.rename(tmp_path / "root", moved)
    frame2 = build_catalog(spec_for(tmp_path, "image_folder", {"root": str(moved)})).frame
    assert frame2["sample_id"].tolist() == frame["sample_id"].tolist()


def test_identity_folders_group_by_identity(tmp_path):
    jpeg(tmp_path / "root" / "id_1" / "a.jpg")
    spec = spec_for(tmp_path, "image_folder", {"root": "root", "labels_are": "identity"})
    row = build_catalog(spec).frame.iloc[0]
    assert row["group_id"] == "id_1" and row["group_kind"] == "identity"


def test_before_after_pairs_are_groups_and_unpaired_reported(tmp_path):
    for stem in ("0000", "0001"):
        jpeg(tmp_path / "pairs" / f"{stem}_before.jpg")
        jpeg(tmp_path / "pairs" / f"{stem}_after.jpg")
    jpeg(tmp_path / "pairs" / "0002_before.jpg")       # its partner is missing
    frame = build_catalog(spec_for(tmp_path, "before_after", {"root": "pairs"})).frame
    assert len(frame) == 4
    assert set(frame["group_kind"]) == {"pair"}
    assert frame.groupby("group_id")["role"].apply(sorted).tolist() == [["after", "before"]] * 2
    with pytest.raises(SourceError, match="0002_before.jpg"):
        build_catalog(spec_for(tmp_path, "before_after",
                               {"root": "pairs", "on_unpaired": "error"}))


def test_golden_hybrid_missing_used_subset_and_label_keys(golden):
    src = {"labels_file": str(golden / "hdf5/hybrid_labels.h5"),
           "images_dir": str(golden / "hdf5/hybrid_images"), "label_key": "labels/gender",
           "require_labels": ["labels/age"]}
    frame = build_catalog(spec_for(Path("/"), "hybrid", src)).frame
    expected = json.loads((golden / "hdf5/expected.json").read_text())["hybrid_labels.h5"]
    assert frame["source_key"].tolist() == [i + ".jpg" for i in expected["image_ids"]]
    missing = frame.loc[frame["status"] == "missing", "source_key"].str[:-4].tolist()
    assert missing == expected["missing"]
    unused = frame.loc[~frame["used"], "source_key"].str[:-4].tolist()
    assert unused == expected["null_age"]           # NaN age excludes, as seed 000's PARTIAL does
    assert frame.loc[frame["status"] == "missing", "index_in_source"].tolist() == [3, 11]


def test_hybrid_without_named_dataset_names_what_exists(golden):
    src = {"labels_file": str(golden / "hdf5/hybrid_labels.h5"),
           "images_dir": str(golden / "hdf5/hybrid_images"), "label_key": "labels/identity"}
    with pytest.raises(SourceError, match=r"no dataset 'labels/identity'.*labels/age"):
        build_catalog(spec_for(Path("/"), "hybrid", src))


def test_golden_inat_labels_and_missing(golden):
    src = {"annotations": str(golden / "inat/train2017.json"), "images_dir": str(golden / "inat")}
    frame = build_catalog(spec_for(Path("/"), "coco", src)).frame
    expected = json.loads((golden / "inat/expected.json").read_text())
    assert frame.loc[frame["status"] == "missing", "source_key"].tolist() == expected["missing"]
    assert set(frame["supercategory"]) == {"Plantae", "Aves"}
    assert frame["label"].value_counts().to_dict() == {"Corvus corax": 3, "Yucca schidigera": 2}


def test_golden_h5_store_sequences(golden):
    frame = build_catalog(spec_for(Path("/"), "h5_store",
                                   {"file": str(golden / "hdf5/sequences.h5")})).frame
    assert len(frame) == 20 and (frame["status"] == "ok").all()
    assert frame["group_id"].nunique() == 4
    assert frame.groupby("group_id")["frame_index"].apply(list).iloc[0] == [0, 1, 2, 3, 4]


def _hybrid_with_ids(tmp_path, ids):
    images = tmp_path / "images"
    jpeg(images / "ok.jpg")
    outside = jpeg(tmp_path / "secret" / "x.jpg")
    os.symlink(outside, images / "link.jpg")
    with h5py.File(tmp_path / "labels.h5", "w") as h5:
        h5["image_ids"] = np.array(ids, dtype=object).astype("S")
    return {"labels_file": "labels.h5", "images_dir": "images", "extension": ".jpg"}


def test_identifiers_escaping_the_root_are_skipped_and_never_opened(tmp_path, monkeypatch):
    src = _hybrid_with_ids(tmp_path, ["ok", "../secret/x", str(tmp_path / "secret" / "x"), "link"])
    opened = []
    import ml.headers as headers_mod
    real = headers_mod.file_header
    monkeypatch.setattr(headers_mod, "file_header", lambda p: opened.append(p) or real(p))
    result = build_catalog(spec_for(tmp_path, "hybrid", src))
    frame = result.frame.set_index("source_key")
    assert frame.loc["ok.jpg", "status"] == "ok"
    for bad in ("../secret/x.jpg", str(tmp_path / "secret" / "x") + ".jpg", "link.jpg"):
        assert frame.loc[bad, "status"] == "invalid"
    assert len(result.invalid) == 3
    assert not any("secret" in p or p.endswith("link.jpg") for p in opened)
    with pytest.raises(PathEscapeError, match="3 identifier"):
        build_catalog(spec_for(tmp_path, "hybrid", src, on_invalid_path="error"))


def test_undecodable_header_is_reported_not_raised(golden):
    # golden/ as an image folder: its images/ subfolder is one class of awkward files
    spec = spec_for(Path("/"), "image_folder", {"root": str(golden)})
    frame = build_catalog(spec).frame
    by_name = frame.set_index(frame["source_key"])
    assert by_name.loc["images/not_an_image.jpg", "status"] == "corrupt"
    assert by_name.loc["images/not_an_image.jpg", "reason"] == "not an image"
    assert by_name.loc["images/bomb_30000x30000.png", "reason"] == "decompression bomb"
    assert by_name.loc["images/zero_bytes.jpg", "reason"] == "empty"
    assert by_name.loc["images/ok.jpg", "status"] == "ok"
    assert (frame["dropped_by"] == "catalog").tolist() == (frame["status"] != "ok").tolist()


@pytest.mark.parametrize("doc, match", [
    ({"datasets": [{"name": "x", "kind": "parquet_lake", "source": {}}]}, "unknown source kind 'parquet_lake'"),
    ({"datasets": [{"name": "9x", "kind": "coco", "source": {}}]}, "must start with a letter"),
    ({"datasets": []}, "non-empty list"),
    ({"datasets": [{"name": "x", "kind": "coco", "sourc": {}}]}, "unknown keys"),
])
def test_bad_declarations_are_config_errors(tmp_path, doc, match):
    with pytest.raises(ConfigError, match=match):
        parse_datasets(doc, tmp_path / "datasets.yaml")


def test_missing_root_and_empty_dataset(tmp_path):
    with pytest.raises(SourceError, match=r"source.root .*nowhere does not exist"):
        build_catalog(spec_for(tmp_path, "image_folder", {"root": "nowhere"}))
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(SourceError, match="declares no images"):
        build_catalog(spec_for(tmp_path, "image_folder", {"root": "empty"}))
    with pytest.raises(ConfigError, match="dataset .d.: source.annotations: field required"):
        build_catalog(spec_for(tmp_path, "coco", {"images_dir": "empty"}))


def test_bad_json_and_non_hdf5_label_files(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(SourceError, match=r"a.json is not valid JSON \(line 1"):
        build_catalog(spec_for(tmp_path, "coco", {"annotations": "a.json", "images_dir": "imgs"}))
    (tmp_path / "labels.h5").write_text("plain text")
    with pytest.raises(SourceError, match="cannot open .*labels.h5 as HDF5"):
        build_catalog(spec_for(tmp_path, "hybrid", {"labels_file": "labels.h5", "images_dir": "imgs"}))


def test_repo_datasets_file_declares_every_sample_kind():
    kinds = {d.kind for d in load_datasets().datasets}
    assert kinds == {"hybrid", "before_after", "h5_store", "coco"}



@pytest.mark.parametrize("layout", ["insightface_legacy", "insightface_recbuilder"])
def test_golden_insightface_recordio_as_a_source(golden, layout):
    root = golden / "recordio"
    frame = build_catalog(spec_for(Path("/"), "recordio", {"path": str(root / layout)})).frame
    expected = (json.loads((root / "expected.json").read_text())["insightface_legacy"]
                if layout == "insightface_legacy" else
                json.loads((root / layout / "expected.json").read_text()))
    assert len(frame) == expected["num_images"]
    assert (frame["status"] == "ok").all() and frame["width"].min() > 0
    assert frame["group_kind"].eq("identity").all()
    if "num_identities" in expected:
        assert frame["label"].nunique() == expected["num_identities"]


def test_a_recordio_source_takes_sizes_from_property_without_reading_a_record(golden, monkeypatch):
    """One record at a time in the main thread cost ~480 us per record (45 min for MS1MV2)."""
    def no_reads(*args, **kwargs):
        raise AssertionError("a record was read to build the catalog")

    monkeypatch.setattr("ml.catalog.read_member", no_reads)
    root = golden / "recordio" / "insightface_legacy"
    frame = build_catalog(spec_for(Path("/"), "recordio", {"path": str(root)})).frame
    assert len(frame) == 10 and (frame["status"] == "ok").all()
    assert set(frame["width"]) == {112} and set(frame["height"]) == {112}
    index = open_face_rec(root)                       # keys and labels as the headers say
    assert frame["source_key"].tolist() == frame["member"].tolist() == \
        [str(k) for k in index.image_keys.tolist()]
    assert frame["label"].tolist() == frame["group_id"].tolist() == \
        [str(label) for label in index.labels.tolist()]
    index.close()


def test_image_folder_symlinked_file_leading_out_is_invalid_and_never_opened(tmp_path,
                                                                             monkeypatch):
    jpeg(tmp_path / "root" / "cat" / "a.jpg")
    jpeg(tmp_path / "root" / "cat" / "b.jpg")
    secret = jpeg(tmp_path / "secret.jpg")
    os.symlink(secret, tmp_path / "root" / "cat" / "leak.jpg")
    os.symlink(tmp_path / "root" / "cat" / "a.jpg", tmp_path / "root" / "cat" / "alias.jpg")
    opened = []
    import ml.headers as headers_mod
    real = headers_mod.file_header
    monkeypatch.setattr(headers_mod, "file_header", lambda p: opened.append(p) or real(p))
    frame = build_catalog(spec_for(tmp_path, "image_folder", {"root": "root"})).frame
    status = dict(zip(frame["source_key"], frame["status"]))
    assert status == {"cat/a.jpg": "ok", "cat/alias.jpg": "ok", "cat/b.jpg": "ok",
                      "cat/leak.jpg": "invalid"}
    assert not any(p.endswith("leak.jpg") or "secret" in p for p in opened)
    assert frame.loc[frame["source_key"] == "cat/b.jpg", "path"].item() == \
        str(tmp_path / "root" / "cat" / "b.jpg")


def test_progress_is_reported_while_the_source_is_read(tmp_path):
    for i in range(9000):
        (tmp_path / "root" / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
    jpeg(tmp_path / "root" / "c0" / "x.jpg")
    for i in range(9000):
        os.link(tmp_path / "root" / "c0" / "x.jpg", tmp_path / "root" / f"c{i % 3}" / f"{i}.jpg")
    from ml.progress import Progress
    started: list[Progress] = []
    messages: list[str] = []

    def factory(total, what):
        p = Progress(total, what, interval=0.0, emit=messages.append)
        started.append(p)
        return p

    build_catalog(spec_for(tmp_path, "image_folder", {"root": "root"}), progress_factory=factory)
    assert [p.what for p in started] == ["reading source", "headers"]
    assert any(m.startswith("reading source: 4096 so far") for m in messages)
    assert started[1].total == 9001 and started[1].done == 9001
    assert any(m.startswith("headers: 9001/9001") for m in messages)


def test_a_partition_keeps_and_opens_only_its_samples_and_agrees_on_label_indices(tmp_path,
                                                                              monkeypatch):
    """partitions: 4 — each partition's catalog holds only the ids that hash to it, reads only their
    headers, and numbers labels against every label of the dataset; together the partitions are
    the unpartitioned catalog, row for row."""
    for c, cls in enumerate(("ant", "bee", "cat", "dog", "eel")):
        for i in range(2 + 3 * c):                  # 'ant' has 2 images: absent from most partitions
            jpeg(tmp_path / "root" / cls / f"{i}.jpg", size=(30 + i, 20))
    whole = build_catalog(spec_for(tmp_path, "image_folder", {"root": "root"})).frame
    spec = spec_for(tmp_path, "image_folder", {"root": "root"}, partitions=4)
    opened: list[str] = []
    real = catalog_mod.read_headers
    monkeypatch.setattr(catalog_mod, "read_headers",
                        lambda paths, **kw: (opened.extend(text_column(paths).to_pylist()),
                                             real(paths, **kw))[1])
    parts = []
    for index, key in enumerate(partition_keys(4)):
        opened.clear()
        part = build_catalog(spec, partition=key).frame
        assert (partition_codes(part["sample_id"], 4) == index).all()
        assert sorted(opened) == sorted(part["path"])          # no other file was opened
        parts.append(part)
    assert min(len(p) for p in parts) < len(whole) / 2
    together = pd.concat(parts).sort_values("sample_id").reset_index(drop=True)
    expected = whole.sort_values("sample_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(together.drop(columns="index_in_source"),
                                  expected.drop(columns="index_in_source"), check_dtype=False)
    with pytest.raises(ConfigError, match="does not exist"):
        build_catalog(spec, partition="07")
