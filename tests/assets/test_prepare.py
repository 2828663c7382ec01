"""The prepare graph materialized in-process on small datasets."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
from PIL import Image
import pytest

from tests.assets.helpers import (definitions_for, make_folder_dataset, make_pairs_dataset,
                                  materialization_metadata, materialize_all, tree_digest)

FILE_ASSETS = ("verification_report", "resized", "splits")


@pytest.fixture
def small(tmp_path):
    folder = make_folder_dataset(tmp_path / "src" / "folder")
    pairs = make_pairs_dataset(tmp_path / "src" / "pairs")
    datasets = [
        {"name": "animals", "kind": "image_folder", "source": {"root": str(folder)},
         "resize": {"mode": "letterbox", "width": 64, "height": 64, "workers": 1},
         "splits": {"link_tree": True}},
        {"name": "pairs", "kind": "before_after", "source": {"root": str(pairs)},
         "resize": {"mode": "stretch", "width": 64, "height": 48, "pool_depth": 4, "workers": 1}},
    ]
    return tmp_path, datasets


def test_prepare_materializes_every_asset_with_paths_and_leaves_sources_alone(small):
    tmp_path, datasets = small
    before = tree_digest(tmp_path / "src")
    defs = definitions_for(tmp_path, datasets)
    result = materialize_all(defs)
    assert result.success
    for name in ("animals", "pairs"):
        for asset in FILE_ASSETS:
            meta = materialization_metadata(result, [name, asset])
            assert Path(meta["path"]).exists(), (name, asset)
        splits = pd.read_parquet(tmp_path / "outputs" / name / "splits.parquet")
        assert set(splits["split"]) <= {"train", "val", "test"}
        for p in splits["file"]:
            assert Path(p).is_file() and str(tmp_path / "outputs") in p
    animals = materialization_metadata(result, ["animals", "splits"])
    assert animals["train_count"] + animals["val_count"] + animals["test_count"] == 18
    assert Path(animals["imagefolder"]).is_dir() and animals["hard_links"] == 18
    assert "data:image/png;base64," in animals["preview"]
    pairs = pd.read_parquet(tmp_path / "outputs" / "pairs" / "splits.parquet")
    assert pairs.groupby("group_id")["split"].nunique().max() == 1   # a pair never straddles
    assert tree_digest(tmp_path / "src") == before                   # nothing moved or rewritten


def test_rerun_does_no_image_work_and_changed_config_redoes_it(small):
    tmp_path, datasets = small
    defs = definitions_for(tmp_path, datasets[:1])
    instance = dg.DagsterInstance.ephemeral()
    first = materialize_all(defs, instance=instance)
    assert materialization_metadata(first, ["animals", "resized"])["processed"] == 18
    again = materialize_all(defs, instance=instance)
    meta = materialization_metadata(again, ["animals", "resized"])
    assert meta["processed"] == 0 and meta["unchanged"] == 18
    changed = materialize_all(defs, instance=instance, run_config={
        "ops": {"animals__resized": {"config": {"width": 48}}}})
    assert materialization_metadata(changed, ["animals", "resized"])["processed"] == 18


def test_failed_verification_blocks_everything_downstream(tmp_path, golden_copy):
    hybrid = golden_copy("hdf5")
    defs = definitions_for(tmp_path, [{
        "name": "hy", "kind": "hybrid",
        "source": {"labels_file": str(hybrid / "hybrid_labels.h5"),
                   "images_dir": str(hybrid / "hybrid_images"), "label_key": "labels/gender"},
    }])
    result = materialize_all(defs, raise_on_error=False)
    checks = [e for e in result.get_asset_check_evaluations()
              if e.check_name == "images_within_thresholds"]
    assert len(checks) == 1 and not checks[0].passed
    assert "3" in checks[0].description and "missing_images_report.json" in checks[0].description
    materialized = {m.asset_key.path[-1] for m in result.get_asset_materialization_events()
                    for m in [m.event_specific_data.materialization]}
    assert "verification_report" in materialized
    assert not materialized & {"resized", "splits"}
    report = json.loads((tmp_path / "outputs" / "hy" / "assets" /
                         "missing_images_report.json").read_text())
    assert sorted(report["missing_identifiers"]) == ["1003_0.jpg", "1011_0.jpg"]


def test_unsafe_dimensions_fail_the_check_and_rounding_fixes_them(small):
    tmp_path, datasets = small
    pairs = dict(datasets[1], resize={"mode": "stretch", "width": 70, "height": 50,
                                      "pool_depth": 3, "workers": 1})
    result = materialize_all(definitions_for(tmp_path, [pairs]), raise_on_error=False)
    check = [e for e in result.get_asset_check_evaluations() if e.check_name == "safe_dimensions"][0]
    assert not check.passed
    assert "72" in check.description and "48" in check.description   # nearest safe sizes named
    assert not any(m.asset_key.path[-1] == "splits" for m in
                   [e.event_specific_data.materialization
                    for e in result.get_asset_materialization_events()])
    pairs["resize"] = dict(pairs["resize"], round_to_safe=True)
    ok = materialize_all(definitions_for(tmp_path, [pairs]))
    meta = materialization_metadata(ok, ["pairs", "resized"])
    assert meta["size"] == "72x48"


def test_reverify_job_rechecks_disk_without_rematerializing_the_catalog(small):
    tmp_path, datasets = small
    defs = definitions_for(tmp_path, [dict(datasets[0], verify={"max_missing_ratio": 0.2,
                                                                 "level": "decode"})])
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_all(defs, instance=instance).success
    (tmp_path / "src" / "folder" / "class_0" / "00.jpg").rename(tmp_path / "moved_away.jpg")
    cut = tmp_path / "src" / "folder" / "class_1" / "00.jpg"      # this test's own copy
    cut.write_bytes(cut.read_bytes()[:-80])                       # cut short in the scan
    result = defs.resolve_job_def("reverify_images").execute_in_process(instance=instance)
    keys = {e.event_specific_data.materialization.asset_key.path[-1]
            for e in result.get_asset_materialization_events()}
    assert keys == {"verification_report", "quality_report"}
    meta = materialization_metadata(result, ["animals", "verification_report"])
    assert meta["missing_count"] == 1 and meta["corrupt_count"] == 1
    bad = [r.data for r in meta["bad_samples"].records]            # the UI's table of bad files
    assert bad[0] == {"source_key": "class_0/00.jpg", "status": "missing", "reason": "missing",
                      "detail": "no such file", "dropped_by": "verification_report"}
    assert bad[1]["source_key"] == "class_1/00.jpg" and bad[1]["status"] == "corrupt"
    # the truncated file's top half still decodes: the gallery shows it, inline and on disk
    assert "](data:image/" in meta["corrupt_gallery"]
    with Image.open(meta["corrupt_gallery_path"]) as gallery:
        assert gallery.width > 100


def test_repo_graph_snapshot():
    """The demo's asset graph, jobs and schedules: an accidental change shows up here."""
    from definitions import defs

    keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
    expected = sorted([f"{d}/{a}" for d in ("faces", "pairs", "sequences", "inat")
                       for a in ("catalog", "verification_report", "quality_report", "resized",
                                 "splits")]
                      + ["faces/recordio", "faces/tfrecords", "faces/validation_memfile",
                         "faces/augmented_samples", "sequences/h5_store", "inat/tfrecords"]
                      + [f"{d}/{a}" for d in ("faces", "pairs", "sequences", "inat")
                         for a in ("model", "model_card")])
    assert keys == expected
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"prepare", "reverify_images", "train"}
    prepare = {k.to_user_string() for k in defs.resolve_job_def("prepare").asset_layer.executable_asset_keys}
    assert not any(k.endswith(("/model", "/model_card")) for k in prepare), "prepare never trains"
    schedule = defs.resolve_schedule_def("reverify_images_schedule")
    assert schedule.cron_schedule == "0 3 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    graph = defs.resolve_asset_graph()
    chain = ["catalog", "verification_report", "resized", "splits"]   # each reads its parent only
    for parent, child in zip(chain, chain[1:]):
        assert graph.get(dg.AssetKey(["faces", child])).parent_keys == {
            dg.AssetKey(["faces", parent])}


SEED000_YAML = """
DATA:
  HYBRID:
    USE_HYBRID: True
    IMAGES_DIR: '/path/to/images'
    FILE_EXTENSION: '.jpg'
    ALLOW_MISSING_IMAGES: True
    VERIFY_IMAGES:
      ENABLED: True
      MAX_MISSING_RATIO: 0.25
      MAX_MISSING_COUNT: 100
      NUM_WORKERS: 2
      CHUNK_SIZE: 1000
      LOG_MISSING: True
      REPORT_PATH: '{output_dir}/assets/missing_images_report.json'
"""


def test_a_users_seed000_yaml_is_used_as_is(tmp_path, golden_copy):
    hybrid = golden_copy("hdf5")
    (tmp_path / "experiment.yaml").write_text(SEED000_YAML)
    defs = definitions_for(tmp_path, [{
        "name": "hy", "kind": "hybrid",
        "source": {"labels_file": str(hybrid / "hybrid_labels.h5"),
                   "images_dir": str(hybrid / "hybrid_images"), "label_key": "labels/gender"},
        "verify": {"seed000_config": str(tmp_path / "experiment.yaml")},
    }])
    result = materialize_all(defs)        # 3 bad of 20 = 15% passes the file's 25% ratio
    assert result.success
    report = json.loads((tmp_path / "outputs" / "hy" / "assets" /
                         "missing_images_report.json").read_text())
    assert report["thresholds"]["max_missing_ratio"] == 0.25
    meta = materialization_metadata(result, ["hy", "resized"])
    assert meta["dropped_bad_samples"] == 3


def test_an_existing_insightface_recordio_prepares_end_to_end(tmp_path, golden):
    defs = definitions_for(tmp_path, [{
        "name": "emore", "kind": "recordio",
        "source": {"path": str(golden / "recordio" / "insightface_legacy")},
        "resize": {"mode": "shorter_side_crop", "width": 56, "height": 56, "workers": 1},
    }])
    result = materialize_all(defs)
    report = json.loads((tmp_path / "outputs" / "emore" / "assets" /
                         "missing_images_report.json").read_text())
    assert report["missing_count"] == 0 and report["corrupt_count"] == 0
    resized = materialization_metadata(result, ["emore", "resized"])
    catalog = pd.read_parquet(tmp_path / "outputs" / "emore" / "catalog.parquet")
    assert resized["processed"] == len(catalog) > 0


def test_the_sample_table_says_which_stage_dropped_each_sample(small):
    """One vocabulary and a dropped_by column from the catalog to the splits: a file whose
    header is garbage is dropped by the catalog, one that vanished before verification by
    verification; the resized table still shows both, the splits hold only what made it."""
    tmp_path, datasets = small
    folder = tmp_path / "src" / "folder"
    (folder / "class_1" / "02.jpg").write_bytes(b"not a jpeg")              # bad header
    defs = definitions_for(tmp_path, [dict(datasets[0], verify={"max_missing_ratio": 0.2})])
    instance = dg.DagsterInstance.ephemeral()
    key = lambda a: dg.AssetKey(["animals", a])
    assert materialize_all(defs, instance=instance, selection=[key("catalog")]).success
    (folder / "class_2" / "03.jpg").rename(tmp_path / "moved_away.jpg")       # after the catalog
    assert materialize_all(defs, instance=instance,
                           selection=[key("verification_report"), key("resized"),
                                      key("splits")]).success
    out = tmp_path / "outputs" / "animals"
    tables = {name: pd.read_parquet(out / f"{name}.parquet")
              for name in ("catalog", "verification_report", "resized", "splits")}
    verified = tables["verification_report"].set_index("source_key")
    assert verified.loc["class_1/02.jpg", ["status", "reason", "dropped_by"]].tolist() == \
        ["corrupt", "not an image", "catalog"]
    assert verified.loc["class_2/03.jpg", ["status", "reason", "dropped_by"]].tolist() == \
        ["missing", "missing", "verification_report"]
    assert (verified.drop(index=["class_1/02.jpg", "class_2/03.jpg"])["dropped_by"] == "").all()
    assert len(verified) == len(tables["catalog"]) == 18
    done = tables["resized"].set_index("source_key")          # every sample, its fate marked
    assert len(done) == 18 and done.loc["class_2/03.jpg", "dropped_by"] == "verification_report"
    assert (done["file"] != "").sum() == 16 and done.loc["class_1/02.jpg", "file"] == ""
    assert set(done.loc[done["file"] != "", "resize"]) == {"resized"}
    splits = tables["splits"]
    assert len(splits) == 16 and (splits["dropped_by"] == "").all()
    assert (splits["status"] == "ok").all() and splits["file"].str.endswith(".jpg").all()
    assert splits["sha256"].str.len().eq(64).all()


def test_choice_options_are_dropdowns_in_the_launchpad_and_run_as_values(small):
    """mode, format and level are Enums of the library's own lists (dropdowns), and a run
    config naming a choice reaches the step as its plain value."""
    from dagster._config.config_type import ConfigTypeKind
    from dagster._config.pythonic_config.config import infer_schema_from_config_class

    from assets.resize import ResizeRunConfig
    from assets.training import TrainRunConfig
    from assets.verification import VerifyRunConfig
    from ml.resize import FORMATS, MODES
    from ml.train.tasks import DEVICES
    from ml.verify import LEVELS
    for config, field, values in ((ResizeRunConfig, "mode", MODES),
                                  (ResizeRunConfig, "format", tuple(FORMATS)),
                                  (VerifyRunConfig, "level", LEVELS),
                                  (TrainRunConfig, "device", DEVICES)):
        kind = infer_schema_from_config_class(config).config_type.fields[field].config_type
        assert kind.inner_type.kind == ConfigTypeKind.ENUM
        assert [v.config_value for v in kind.inner_type.enum_values] == list(values)
    tmp_path, datasets = small
    defs = definitions_for(tmp_path, datasets[:1])
    result = materialize_all(defs, run_config={"ops": {
        "animals__verification_report": {"config": {"level": "exists"}},
        "animals__resized": {"config": {"mode": "stretch", "format": "png"}}}})
    assert materialization_metadata(result, ["animals", "verification_report"])[
        "check_level"] == "exists"
    assert materialization_metadata(result, ["animals", "resized"])["mode"] == "stretch"
    assert (tmp_path / "outputs" / "animals" / "resized" / "class_0" / "00.png").exists()


def test_a_split_missing_classes_is_a_warning_not_a_stop(small):
    tmp_path, datasets = small
    defs = definitions_for(tmp_path, [dict(datasets[0], splits={"min_split_size": 5})])
    result = materialize_all(defs)
    assert result.success                                   # non-blocking: nothing stopped
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    coverage = checks["splits_cover_every_class"]
    assert not coverage.passed and coverage.severity == dg.AssetCheckSeverity.WARN
    assert "fewer than min_split_size 5" in coverage.description
