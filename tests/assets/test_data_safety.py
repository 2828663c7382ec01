"""Hostile and careless input through the real entry points (a datasets YAML, Definitions,
materialize): source files stay byte-identical, nothing is written outside the dataset's output
folder, and bad values fail when definitions load with a message naming dataset and option."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from ml.errors import ConfigError, DatasetError
from tests.assets.helpers import (definitions_for, make_folder_dataset, materialization_metadata,
                                  materialize_all, tree_digest, write_jpeg)

SMALL = {"mode": "stretch", "width": 32, "height": 32, "workers": 1}


def outside_digest(tmp_path: Path) -> dict:
    """Every file under tmp_path except the dataset's outputs and the datasets file."""
    return {k: v for k, v in tree_digest(tmp_path).items()
            if not k.startswith("outputs/") and k != "datasets.yaml"}


def coco_with_hostile_labels(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "src" / "images"
    for i in range(12):
        write_jpeg(images / f"{i:02d}.jpg", size=(40 + i, 30), colour=(20 * i, 80, 120))
    # from outputs/<name>/splits/<tree>/<split>/ five '..' reach tmp_path: the old link tree put
    # its "links" into the images folder and, finding the file there, copied over it
    escape = "../../../../../src/images"
    categories = [{"id": 1, "name": escape, "supercategory": "x"},
                  {"id": 2, "name": "..", "supercategory": "x"},
                  {"id": 3, "name": "/etc", "supercategory": "x"},
                  {"id": 4, "name": "Cat", "supercategory": "x"},
                  {"id": 5, "name": "cat", "supercategory": "x"}]
    doc = {"images": [{"id": i, "file_name": f"{i:02d}.jpg"} for i in range(12)],
           "annotations": [{"image_id": i, "category_id": 1 + i % 5} for i in range(12)],
           "categories": categories}
    ann = tmp_path / "src" / "ann.json"
    ann.write_text(json.dumps(doc))
    return ann, images


def test_labels_that_climb_out_never_touch_the_sources_in_the_link_tree(tmp_path):
    ann, images = coco_with_hostile_labels(tmp_path)
    before = outside_digest(tmp_path)
    defs = definitions_for(tmp_path, [{
        "name": "inat", "kind": "coco", "source": {"annotations": str(ann), "images_dir": str(images)},
        "resize": SMALL, "splits": {"link_tree": True, "ratios": [0.5, 0.25, 0.25]}}])
    result = materialize_all(defs)
    assert result.success
    assert outside_digest(tmp_path) == before            # every source byte-identical, nothing new
    tree = tmp_path / "outputs" / "inat" / "splits" / "imagefolder"
    meta = materialization_metadata(result, ["inat", "splits"])
    assert meta["hard_links"] + meta["copies"] == 12
    files = [p for p in tree.rglob("*") if p.is_file()]
    assert len(files) == 12
    for f in files:                                      # <split>/<label>/<file>, all inside
        assert f.resolve().is_relative_to(tree.resolve())
        assert len(f.relative_to(tree).parts) == 3
    labels = {f.parent.name for f in files}
    assert len(labels) == 5 and not any(l.startswith(".") or "/" in l for l in labels)
    assert len({l.casefold() for l in labels}) == 5      # 'Cat' and 'cat' stay two folders


def test_split_names_from_config_that_are_not_plain_names_fail_at_load(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=3)
    before = tree_digest(folder)
    with pytest.raises(ConfigError, match=r"dataset 'ds'.*splits.names.*'\.\./\.\./src/x'"):
        definitions_for(tmp_path, [{"name": "ds", "kind": "image_folder",
                                    "source": {"root": str(folder)}, "resize": SMALL,
                                    "splits": {"names": ["train", "../../src/x", "test"],
                                               "link_tree": True}}])
    assert tree_digest(folder) == before


def test_a_report_path_onto_a_source_image_fails_at_load_and_the_image_is_untouched(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=3)
    before = tree_digest(folder)
    target = folder / "class_0" / "00.jpg"
    with pytest.raises(ConfigError, match=r"dataset 'ds': verify.report_path .*00\.jpg.*outside "
                                          r"the dataset's output folder"):
        definitions_for(tmp_path, [{"name": "ds", "kind": "image_folder",
                                    "source": {"root": str(folder)}, "resize": SMALL,
                                    "verify": {"report_path": str(target)}}])
    assert tree_digest(folder) == before


def test_a_report_path_onto_a_file_we_did_not_write_is_refused(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=3)
    notes = tmp_path / "outputs" / "ds" / "notes.json"
    notes.parent.mkdir(parents=True)
    notes.write_text('{"mine": true}')
    with pytest.raises(ConfigError, match="notes.json already exists and was not written by this"):
        definitions_for(tmp_path, [{"name": "ds", "kind": "image_folder",
                                    "source": {"root": str(folder)}, "resize": SMALL,
                                    "verify": {"report_path": "{output_dir}/notes.json"}}])
    assert notes.read_text() == '{"mine": true}'


def test_a_report_we_wrote_is_replaced_by_the_next_run(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=3)
    spec = [{"name": "ds", "kind": "image_folder", "source": {"root": str(folder)},
             "resize": SMALL, "verify": {"report_path": "{output_dir}/reports/missing.json"}}]
    defs = definitions_for(tmp_path, spec)
    selection = ["ds/catalog", "ds/verification_report"]
    assert materialize_all(defs, selection=selection).success
    report = tmp_path / "outputs" / "ds" / "reports" / "missing.json"
    first = json.loads(report.read_text())["verification_timestamp"]
    assert materialize_all(definitions_for(tmp_path, spec), selection=selection).success
    assert json.loads(report.read_text())["total_images_checked"] == 6
    assert json.loads(report.read_text())["verification_timestamp"] >= first


@pytest.mark.parametrize("section, problem", [
    ({"splits": {"ratios": ["a", "b", "c"]}}, r"dataset 'ds': splits.ratios.0 'a': input should be a valid number"),
    ({"splits": {"ratios": 0.8}}, r"dataset 'ds': splits.ratios 0.8: input should be a list"),
    ({"source_extensions": ".jpg"}, r"dataset 'ds': source.extensions '\.jpg': input should be a valid list"),
    ({"source_extensions": ["jpg"]}, r"dataset 'ds': source.extensions.0 'jpg': 'jpg' is not an extension like \.jpg"),
])
def test_option_types_fail_at_load_naming_dataset_and_option(tmp_path, section, problem):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=3)
    entry = {"name": "ds", "kind": "image_folder", "source": {"root": str(folder)}, "resize": SMALL}
    if "source_extensions" in section:
        entry["source"]["extensions"] = section["source_extensions"]
    else:
        entry.update(section)
    with pytest.raises(ConfigError, match=problem):
        definitions_for(tmp_path, [entry])


def test_a_storage_root_that_is_a_file_is_a_clear_error(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=3)
    (tmp_path / "outputs").write_text("a file")
    with pytest.raises(ConfigError, match="storage_root .*outputs is a file"):
        definitions_for(tmp_path, [{"name": "ds", "kind": "image_folder",
                                    "source": {"root": str(folder)}}])


def test_two_datasets_sharing_one_output_folder_are_refused(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=3)
    shared = str(tmp_path / "out" / "same")
    with pytest.raises(ConfigError, match="datasets 'a' and 'b' share the output folder"):
        definitions_for(tmp_path, [
            {"name": "a", "kind": "image_folder", "source": {"root": str(folder)}, "output_dir": shared},
            {"name": "b", "kind": "image_folder", "source": {"root": str(folder)}, "output_dir": shared}])


def test_an_output_folder_among_the_source_images_is_refused(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=3)
    with pytest.raises(ConfigError, match="output folder .* and the images at .* overlap"):
        definitions_for(tmp_path, [{"name": "a", "kind": "image_folder",
                                    "source": {"root": str(folder)},
                                    "output_dir": str(folder / "prepared")}])


def test_same_name_different_extension_names_both_files(tmp_path):
    folder = tmp_path / "src"
    write_jpeg(folder / "c" / "x.jpg")
    write_jpeg(folder / "c" / "x.png")
    write_jpeg(folder / "c" / "y.jpg")
    defs = definitions_for(tmp_path, [{"name": "ds", "kind": "image_folder",
                                       "source": {"root": str(folder)}, "resize": SMALL}])
    result = materialize_all(defs, raise_on_error=False,
                             selection=["ds/catalog", "ds/verification_report", "ds/resized"])
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    message = failure.step_failure_data.error.message
    assert "c/x.jpg" in message and "c/x.png" in message and "rename one" in message


def test_non_utf8_file_and_folder_names_are_reported_invalid_and_the_rest_goes_on(tmp_path):
    folder = make_folder_dataset(tmp_path / "src", classes=2, per_class=3)
    raw = bytes(folder) + b"/class_0/caf\xe9.jpg"                     # Latin-1, not UTF-8
    write_jpeg(Path(raw.decode("utf-8", "surrogateescape")))
    bad_dir = bytes(folder) + b"/\xff\xfe"
    write_jpeg(Path((bad_dir + b"/a.jpg").decode("utf-8", "surrogateescape")))
    defs = definitions_for(tmp_path, [{"name": "ds", "kind": "image_folder",
                                       "source": {"root": str(folder)}, "resize": SMALL,
                                       "verify": {"max_missing_ratio": 0.5}}])
    result = materialize_all(defs, selection=["ds/catalog", "ds/verification_report"])
    assert result.success
    meta = materialization_metadata(result, ["ds", "catalog"])
    assert meta["samples"] == 8 and meta["status_invalid"] == 2 and meta["status_ok"] == 6
    shown = json.dumps(meta["invalid_identifiers"])
    assert "caf\\\\xe9.jpg" in shown and "\\\\xff\\\\xfe/a.jpg" in shown and "not valid UTF-8" in shown


def test_hybrid_ids_that_are_not_utf8_are_reported_invalid(tmp_path):
    images = tmp_path / "src" / "images"
    for name in ("a", "b"):
        write_jpeg(images / f"{name}.jpg")
    labels = tmp_path / "src" / "labels.h5"
    with h5py.File(labels, "w") as h5:
        h5.create_dataset("image_ids", data=np.array([b"a", b"b", b"\xe9t\xe9"]))
    defs = definitions_for(tmp_path, [{"name": "hy", "kind": "hybrid", "resize": SMALL,
                                       "source": {"labels_file": str(labels),
                                                  "images_dir": str(images)}}])
    result = materialize_all(defs, selection=["hy/catalog"])
    meta = materialization_metadata(result, ["hy", "catalog"])
    assert meta["status_invalid"] == 1 and meta["status_ok"] == 2
    assert "\\\\xe9t\\\\xe9.jpg" in json.dumps(meta["invalid_identifiers"])


def test_a_damaged_hybrid_label_file_names_the_file(tmp_path):
    images = tmp_path / "src" / "images"
    write_jpeg(images / "a.jpg")
    labels = tmp_path / "src" / "labels.h5"
    with h5py.File(labels, "w") as h5:
        for k in range(20):
            h5.create_dataset(f"g{k}/image_ids", data=np.array([b"a"]))
    data = bytearray(labels.read_bytes())
    data[128:144] = b"\xff" * 16
    labels.write_bytes(bytes(data))
    from ml.catalog import build_catalog
    from ml.dataset_spec import load_datasets
    definitions_for(tmp_path, [{"name": "hy", "kind": "hybrid",
                                "source": {"labels_file": str(labels), "images_dir": str(images),
                                           "ids_key": "missing"}}])
    spec = load_datasets(tmp_path / "datasets.yaml").get("hy")
    with pytest.raises(DatasetError, match=r"labels\.h5"):
        build_catalog(spec)
