"""Image verification: golden files classified, used-subset gating, invalid paths never opened,
checksums catching changed files, seed-000 config and report compatibility."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import ml.file_stats as file_stats
import ml.verify.checks as verify_mod
from ml.checksums import ChecksumRegistry
from ml.errors import ConfigError
from ml.imageio import BOMB, CHANGED, EMPTY, NOT_AN_IMAGE, TRUNCATED, decode
from ml.progress import Progress
from ml.verify import (VerifyConfig, resolve_report_path, verify_catalog, within_thresholds,
                       write_report)

SEED000_KEYS = {"total_images_checked", "missing_count", "missing_ratio", "images_dir",
                "verification_timestamp", "missing_identifiers", "missing_indices"}
OUR_KEYS = {"corrupt_count", "corrupt", "invalid_identifiers", "invalid_count", "thresholds",
            "check_level", "passed", "whole_label_file", "used_subset"}
BLOCK_KEYS = {"total", "missing_count", "corrupt_count", "invalid_count", "bad_ratio"}
# golden/images/README.json file -> the reason a decode-level check must give ('' = usable)
GOLDEN_REASONS = {"truncated.jpg": TRUNCATED, "zero_bytes.jpg": EMPTY,
                  "not_an_image.jpg": NOT_AN_IMAGE, "bomb_30000x30000.png": BOMB}


def catalog(rows: list[dict]) -> pd.DataFrame:
    """A catalog frame as ml.catalog builds it; each row needs source_key and path at least."""
    full = [{"sample_id": f"s{i:05d}", "member": "", "status": "ok", "used": True,
             "index_in_source": i, **row} for i, row in enumerate(rows)]
    return pd.DataFrame(full)


def files_catalog(root: Path, keys: list[str], **columns) -> pd.DataFrame:
    frame = catalog([{"source_key": k, "path": str(root / k)} for k in keys])
    for name, values in columns.items():
        frame[name] = values
    return frame


def run(frame: pd.DataFrame, root: Path, db: Path | None = None, **config):
    config.setdefault("num_workers", 2)
    return verify_catalog(frame, images_dir=str(root), config=VerifyConfig(**config),
                          checksum_db=db)


def statuses(result, frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    per = result.per_sample.assign(key=frame["source_key"].to_numpy())
    return {r.key: (r.verify_status, r.reason) for r in per.itertuples()}


def jpeg(path: Path, size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 160, 30)).save(path, "JPEG")
    return path


# ----------------------------------------------------------------------------- golden files

def test_every_golden_image_classified_as_its_readme_says(golden, tmp_path):
    readme = json.loads((golden / "images/README.json").read_text())
    frame = files_catalog(golden / "images", sorted(readme))
    result = run(frame, golden / "images", tmp_path / "checksums.sqlite")
    found = statuses(result, frame)
    for name in readme:
        expected = GOLDEN_REASONS.get(name, "")
        assert found[name] == (("corrupt", expected) if expected else ("ok", "")), name
    report = result.report
    assert report["corrupt_count"] == len(GOLDEN_REASONS) and report["missing_count"] == 0
    assert {c["identifier"]: c["reason"] for c in report["corrupt"]} == GOLDEN_REASONS
    ok_rows = result.per_sample.loc[result.per_sample["verify_status"] == "ok"]
    assert ok_rows["sha256"].str.len().eq(64).all()


def test_exists_level_only_checks_presence(golden):
    readme = json.loads((golden / "images/README.json").read_text())
    frame = files_catalog(golden / "images", sorted(readme) + ["absent.jpg"])
    result = run(frame, golden / "images", level="exists")
    assert result.report["missing_identifiers"] == ["absent.jpg"]
    assert result.report["corrupt_count"] == 0 and result.report["check_level"] == "exists"


def garble_keeping_size(path: Path) -> None:
    """Overwrite 50 bytes a quarter into the file with other bytes; size and mtime unchanged."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    start = len(data) // 4
    data[start:start + 50] = bytes(b ^ 0x55 for b in data[start:start + 50])
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    decode(path, draft_size=(1, 1))  # precondition: the garbled file still decodes


def test_garbled_file_ok_on_first_sight_then_changed_since_last_seen(golden_copy, tmp_path):
    images = golden_copy("images")
    db = tmp_path / "state" / "checksums.sqlite"
    frame = files_catalog(images, ["garbled_middle.jpg", "ok.jpg"])
    first = run(frame, images, db)
    assert statuses(first, frame)["garbled_middle.jpg"] == ("ok", "")
    garble_keeping_size(images / "garbled_middle.jpg")

    # size and mtime are unchanged, so only the content hash (decode level) can tell
    assert run(frame, images, db, level="exists").passed
    second = run(frame, images, db)
    assert statuses(second, frame) == {"garbled_middle.jpg": ("corrupt", CHANGED),
                                       "ok.jpg": ("ok", "")}
    assert second.report["corrupt"][0]["detail"].startswith("sha256 ")
    assert not second.passed and "1 corrupt" in second.message

    # still reported on the next run: the recorded hash is not silently replaced
    assert statuses(run(frame, images, db), frame)["garbled_middle.jpg"][1] == CHANGED
    # accepting the change re-baselines it
    accepted = verify_catalog(frame, images_dir=str(images), config=VerifyConfig(num_workers=2),
                              checksum_db=db, accept_changes=True)
    assert accepted.passed and run(frame, images, db).passed


def test_forget_accepts_a_change_and_exists_level_sees_size_changes(golden_copy, tmp_path):
    images = golden_copy("images")
    db = tmp_path / "checksums.sqlite"
    frame = files_catalog(images, ["progressive.jpg"])
    assert run(frame, images, db).passed
    Image.open(images / "ok.jpg").save(images / "progressive.jpg", "JPEG", quality=40)
    cheap = run(frame, images, db, level="exists")
    assert statuses(cheap, frame)["progressive.jpg"] == ("corrupt", CHANGED)
    assert "size" in cheap.report["corrupt"][0]["detail"]
    with ChecksumRegistry(db) as registry:
        assert registry.forget("progressive.jpg") == 1
        assert run(frame, images, db).passed          # recorded afresh
        assert registry.get("progressive.jpg") is not None
    assert run(frame, images, db, level="exists").passed


def test_touched_but_identical_file_refreshes_its_recorded_stat(golden_copy, tmp_path):
    images = golden_copy("images")
    db = tmp_path / "checksums.sqlite"
    frame = files_catalog(images, ["ok.jpg"])
    run(frame, images, db)
    os.utime(images / "ok.jpg", ns=(0, 10**18))
    assert statuses(run(frame, images, db, level="exists"), frame)["ok.jpg"][1] == CHANGED
    assert run(frame, images, db).passed                  # same bytes: the stat is refreshed
    assert run(frame, images, db, level="exists").passed


def hybrid_frame(golden: Path, used: list[bool] | None = None) -> pd.DataFrame:
    with h5py.File(golden / "hdf5/hybrid_labels.h5", "r") as h5:
        ids = [raw.decode() for raw in h5["image_ids"][()]]
    frame = files_catalog(golden / "hdf5/hybrid_images", [i + ".jpg" for i in ids])
    if used is not None:
        frame["used"] = used
    return frame


def test_golden_hybrid_missing_and_corrupt(golden):
    expected = json.loads((golden / "hdf5/expected.json").read_text())["hybrid_labels.h5"]
    result = run(hybrid_frame(golden), golden / "hdf5/hybrid_images")
    report = result.report
    assert [k[:-4] for k in report["missing_identifiers"]] == expected["missing"]
    assert report["missing_indices"] == [expected["image_ids"].index(i) for i in expected["missing"]]
    assert [c["identifier"][:-4] for c in report["corrupt"]] == expected["corrupt"]
    assert report["corrupt"][0]["reason"] == TRUNCATED and report["corrupt"][0]["index"] == 7
    assert report["total_images_checked"] == 20 and not result.passed


def test_golden_hybrid_through_the_catalog_gates_on_used_subset(golden, tmp_path):
    from ml.catalog import build_catalog
    from ml.dataset_spec import parse_datasets
    expected = json.loads((golden / "hdf5/expected.json").read_text())["hybrid_labels.h5"]
    source = {"labels_file": str(golden / "hdf5/hybrid_labels.h5"),
              "images_dir": str(golden / "hdf5/hybrid_images"), "require_labels": ["labels/age"]}
    doc = {"datasets": [{"name": "d", "kind": "hybrid", "source": source}]}
    spec = parse_datasets(doc, tmp_path / "datasets.yaml", base_dir=tmp_path).datasets[0]
    frame = build_catalog(spec).frame
    result = run(frame, golden / "hdf5/hybrid_images")
    assert result.report["whole_label_file"]["total"] == 20
    assert result.report["used_subset"]["total"] == 20 - len(expected["null_age"])
    bad = {frame.loc[frame["sample_id"] == s, "source_key"].item()[:-4]
           for s in result.bad_sample_ids()}
    assert bad == set(expected["missing"]) | set(expected["corrupt"])


def test_golden_inat_missing_one_corrupt_one(golden):
    doc = json.loads((golden / "inat/train2017.json").read_text())
    expected = json.loads((golden / "inat/expected.json").read_text())
    frame = files_catalog(golden / "inat", [im["file_name"] for im in doc["images"]])
    report = run(frame, golden / "inat").report
    assert report["missing_identifiers"] == expected["missing"]
    assert [c["identifier"] for c in report["corrupt"]] == expected["corrupt"]
    assert report["missing_indices"] == [3]


def test_hdf5_members_listed_once_hashed_and_missing_keys_reported(golden, monkeypatch):
    expected = json.loads((golden / "hdf5/expected.json").read_text())["sequences.h5"]
    frames = [f for seq in expected["sequences"].values() for f in seq]
    container = str(golden / "hdf5/sequences.h5")
    keys = [f["name"] for f in frames] + ["bottle/obj9_000.jpg"]
    frame = catalog([{"source_key": k, "path": container, "member": k} for k in keys])
    listings = []
    real = verify_mod._container_listing
    monkeypatch.setattr(verify_mod, "_container_listing",
                        lambda c: listings.append(c) or real(c))
    result = run(frame, golden / "hdf5")
    assert listings == [container]
    assert result.report["missing_identifiers"] == ["bottle/obj9_000.jpg"]
    assert result.per_sample["sha256"].tolist()[:-1] == [f["sha256"] for f in frames]
    assert run(frame, golden / "hdf5", level="exists").report["missing_count"] == 1


def test_worker_processes_find_what_threads_find(golden, monkeypatch):
    """From PROCESSES_FROM images the decode runs on processes (the signals hold the GIL):
    statuses, reasons, hashes and signals of plain files and HDF5 members are the threads'."""
    readme = json.loads((golden / "images/README.json").read_text())
    images = files_catalog(golden / "images", sorted(readme))
    container = str(golden / "hdf5/sequences.h5")
    expected = json.loads((golden / "hdf5/expected.json").read_text())["sequences.h5"]
    members = [f["name"] for seq in expected["sequences"].values() for f in seq]
    frame = catalog([*({"source_key": k, "path": p} for k, p in
                       zip(images["source_key"], images["path"])),
                     *({"source_key": k, "path": container, "member": k} for k in members),
                     {"source_key": "gone.jpg", "path": str(golden / "images/gone.jpg")}])
    by_threads = run(frame, golden, level="decode").per_sample
    monkeypatch.setattr(verify_mod, "PROCESSES_FROM", 2)
    monkeypatch.setattr(verify_mod.os, "cpu_count", lambda: 2)     # a one-core runner too
    pools = []
    real_pool = verify_mod._decode_pool
    monkeypatch.setattr(verify_mod, "_decode_pool",
                        lambda config, count: pools.append(p := real_pool(config, count)) or p)
    by_processes = run(frame, golden, level="decode").per_sample
    assert [type(p).__name__ for p in pools] == ["ProcessPoolExecutor"]
    pd.testing.assert_frame_equal(by_processes, by_threads)
    assert by_processes["verify_status"].value_counts().to_dict() == {
        "ok": len(frame) - len(GOLDEN_REASONS) - 1, "corrupt": len(GOLDEN_REASONS), "missing": 1}
    assert by_processes["phash"].notna().sum() > len(members)


# ----------------------------------------------------------------------------- invalid paths

def test_invalid_identifiers_reported_and_never_opened(tmp_path, monkeypatch):
    root = tmp_path / "images"
    jpeg(root / "ok.jpg")
    secret = jpeg(tmp_path / "outside" / "secret.jpg")
    os.symlink(secret, root / "link.jpg")
    frame = catalog([
        {"source_key": "ok.jpg", "path": str(root / "ok.jpg")},
        {"source_key": "../outside/secret.jpg", "path": "", "status": "invalid",
         "reason": "'..' climbs out of the images folder"},
        {"source_key": str(secret), "path": "", "status": "invalid"},
        {"source_key": "link.jpg", "path": str(root / "link.jpg"), "status": "invalid"},
        # defence in depth: rows the catalog let through but whose path leaves the root
        {"source_key": "x/../../outside/secret.jpg",
         "path": str(root / "x" / ".." / ".." / "outside" / "secret.jpg")},
        {"source_key": "elsewhere.jpg", "path": str(secret)},
    ])
    touched: list[str] = []
    real_decode, real_list = verify_mod._decode_files, verify_mod._list_folder
    monkeypatch.setattr(verify_mod, "_decode_files",
                        lambda items, mp, signals=False: touched.extend(p for _, p in items)
                        or real_decode(items, mp, signals))
    monkeypatch.setattr(verify_mod, "_list_folder", lambda f: touched.append(f) or real_list(f))
    result = run(frame, root)
    assert result.per_sample["verify_status"].tolist() == ["ok"] + ["invalid"] * 5
    assert result.report["invalid_identifiers"] == frame["source_key"].tolist()[1:]
    assert result.report["invalid_count"] == 5 and not result.passed
    assert touched == [str(root), str(root / "ok.jpg")]
    assert result.per_sample.loc[1, "detail"] == "'..' climbs out of the images folder"


# ----------------------------------------------------------------------------- gating

def test_used_subset_gates_and_whole_file_is_reported(tmp_path):
    root = tmp_path / "images"
    keys = [f"{i:03d}.jpg" for i in range(100)]
    for k in keys[:89]:
        (root / k).parent.mkdir(exist_ok=True)
        (root / k).touch()
    used = [True] * 90 + [False] * 10    # 89..99 absent: 1 used (index 89), 10 unused
    result = run(files_catalog(root, keys, used=used), root, level="exists",
                 max_missing_ratio=0.02)
    report = result.report
    assert report["used_subset"] == {"total": 90, "missing_count": 1, "corrupt_count": 0,
                                     "invalid_count": 0, "bad_ratio": 1 / 90}
    assert report["whole_label_file"]["missing_count"] == 11
    assert report["whole_label_file"]["bad_ratio"] == pytest.approx(0.11)
    assert report["total_images_checked"] == 90 and report["missing_indices"] == [89]
    assert result.passed                       # seed 000 would fail: 11% of the whole file
    assert len(result.bad_sample_ids()) == 11  # unused bad samples are still known as bad


@pytest.mark.parametrize("bad,total,ratio,count,passes", [
    (1, 100, 0.01, 100, True),     # exactly at the ratio
    (2, 100, 0.01, 100, False),
    (3, 300, 0.01, 100, True),     # 3/300 is 0.01 up to float rounding
    (5, 10, 1.0, 5, True),         # exactly at the count
    (6, 10, 1.0, 5, False),
    (0, 0, 0.0, 0, True),
    (1, 1000, 0.0, 100, False),    # a zero ratio tolerates nothing
])
def test_threshold_edges(bad, total, ratio, count, passes):
    config = VerifyConfig(max_missing_ratio=ratio, max_missing_count=count)
    assert within_thresholds(bad, total, config)[0] is passes


def test_gate_counts_missing_corrupt_and_invalid_together(tmp_path):
    root = tmp_path / "images"
    jpeg(root / "a.jpg")
    (root / "b.jpg").write_bytes(b"not a jpeg")
    frame = catalog([{"source_key": "a.jpg", "path": str(root / "a.jpg")},
                     {"source_key": "b.jpg", "path": str(root / "b.jpg")},
                     {"source_key": "c.jpg", "path": str(root / "c.jpg")},
                     {"source_key": "../d.jpg", "path": "", "status": "invalid"}])
    assert run(frame, root, max_missing_ratio=1.0, max_missing_count=3).passed
    failed = run(frame, root, max_missing_ratio=1.0, max_missing_count=2)
    assert not failed.passed
    assert "1 missing, 1 corrupt, 1 invalid = 3 bad" in failed.message
    assert "count 3 > 2" in failed.message


def test_disabled_reads_nothing(tmp_path, monkeypatch):
    root = tmp_path / "images"
    monkeypatch.setattr(verify_mod, "_list_folder", lambda f: pytest.fail("listed " + f))
    result = run(files_catalog(root, ["a.jpg"]), root, enabled=False)
    assert result.passed and result.report["check_level"] == "disabled"


# ----------------------------------------------------------------------------- report & config

def test_report_keys_exactly_and_written_atomically(golden, tmp_path):
    result = run(hybrid_frame(golden), golden / "hdf5/hybrid_images")
    report = result.report
    assert set(report) == SEED000_KEYS | OUR_KEYS
    assert set(report["whole_label_file"]) == BLOCK_KEYS == set(report["used_subset"])
    assert set(report["thresholds"]) == {"max_missing_ratio", "max_missing_count"}
    assert set(report["corrupt"][0]) == {"identifier", "index", "reason", "detail"}
    assert pd.to_datetime(report["verification_timestamp"], format="%Y-%m-%d %H:%M:%S")
    path = resolve_report_path(VerifyConfig().report_path, tmp_path / "run")
    assert path == tmp_path / "run" / "assets" / "missing_images_report.json"
    write_report(report, path)
    assert json.loads(path.read_text()) == report
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no temp file left


def test_report_path_template():
    assert resolve_report_path("reports/r.json", Path("/out")) == Path("/out/reports/r.json")
    assert resolve_report_path("/abs/r.json", Path("/out")) == Path("/abs/r.json")
    with pytest.raises(ConfigError, match="experiment"):
        resolve_report_path("{experiment}/r.json", Path("/out"))


SEED000_YAML = """
DATA:
  HYBRID:
    USE_HYBRID: True
    IMAGES_DIR: '/path/to/images'
    FILE_EXTENSION: '.jpg'
    ALLOW_MISSING_IMAGES: True
    VERIFY_IMAGES:
      ENABLED: True
      MAX_MISSING_RATIO: 0.02
      MAX_MISSING_COUNT: 50
      NUM_WORKERS: 4
      CHUNK_SIZE: 500
      LOG_MISSING: False
      REPORT_PATH: '{output_dir}/assets/missing_images_report.json'
"""


def test_from_seed000_yaml_maps_every_key():
    doc = yaml.safe_load(SEED000_YAML)
    config = VerifyConfig.from_seed000_yaml(doc["DATA"]["HYBRID"])
    assert config == VerifyConfig(max_missing_ratio=0.02, max_missing_count=50, num_workers=4,
                                  chunk_size=500, log_missing=False, allow_missing_images=True)
    assert VerifyConfig.from_seed000_yaml(doc) == config == VerifyConfig.from_seed000_yaml(doc["DATA"])
    assert VerifyConfig.from_seed000_yaml({"USE_HYBRID": True}) == VerifyConfig()


@pytest.mark.parametrize("verify,match", [
    ({"MAX_MISING_RATIO": 0.1}, "MAX_MISING_RATIO is not a known setting"),
    ({"MAX_MISSING_RATIO": "1%"}, "VERIFY_IMAGES.MAX_MISSING_RATIO '1%': input should be a valid number"),
    ({"MAX_MISSING_RATIO": 1.5}, "MAX_MISSING_RATIO 1.5: input should be less than or equal to 1"),
    ({"NUM_WORKERS": 0}, "NUM_WORKERS 0: input should be greater than or equal to 1"),
    ({"LEVEL": "pixels"}, "LEVEL 'pixels': input should be 'exists' or 'decode'"),
    ({"ENABLED": "yes"}, "ENABLED 'yes': input should be a valid boolean"),
])
def test_bad_seed000_values_are_config_errors(verify, match):
    with pytest.raises(ConfigError, match=match):
        VerifyConfig.from_seed000_yaml({"VERIFY_IMAGES": verify})


# ----------------------------------------------------------------------------- side effects

def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))} | {".": (0, folder.stat().st_mtime_ns)}


def test_verification_never_writes_to_the_images_folder(golden_copy, tmp_path):
    images = golden_copy("images")
    before = snapshot(images)
    readme = json.loads((images / "README.json").read_text())
    frame = files_catalog(images, sorted(readme))
    for level in ("decode", "exists", "decode"):
        run(frame, images, tmp_path / "db" / "checksums.sqlite", level=level)
    assert snapshot(images) == before
    with pytest.raises(ConfigError, match="inside the images folder"):
        run(frame, images, images / "checksums.sqlite")
    assert snapshot(images) == before


def test_progress_and_short_missing_log(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    keys = [f"{i}.jpg" for i in range(3)] + [f"gone_{i}.jpg" for i in range(40)]
    for k in keys[:3]:
        jpeg(root / k)
    lines: list[str] = []
    progress = Progress(0, "verify", interval=0.0, emit=lines.append)
    result = verify_catalog(files_catalog(root, keys), images_dir=str(root),
                            config=VerifyConfig(num_workers=2, chunk_size=1), checksum_db=None,
                            progress=progress, log=lines.append)
    assert progress.done == progress.total == 43
    missing_lines = [line for line in lines if "missing" in line]
    assert len(missing_lines) == 1
    assert missing_lines[0].startswith("40 of 43 used images are missing: gone_0.jpg")
    assert missing_lines[0].endswith("and 30 more")
    assert not result.passed


def test_log_missing_false_is_quiet(tmp_path, caplog):
    root = tmp_path / "images"
    root.mkdir()
    with caplog.at_level(logging.INFO, logger="ml.verify"):
        run(files_catalog(root, ["a.jpg"]), root, log_missing=False)
    assert not caplog.records


def test_a_catalog_read_back_from_parquet_past_131072_rows_is_verified(tmp_path):
    """Parquet gives chunked columns past 131,072 rows: verification crashed with
    "'ChunkedArray' object has no attribute 'indices'" (seed 000's 366,858-image dataset)."""
    n = 140_000
    root = tmp_path / "images"
    for k in range(3):
        jpeg(root / f"f{k % 2}" / f"{k:06d}.jpg")
    keys = [f"f{k % 2}/{k:06d}.jpg" for k in range(n)]
    frame = files_catalog(root, keys)
    frame.to_parquet(tmp_path / "catalog.parquet")
    frame = pd.read_parquet(tmp_path / "catalog.parquet")
    result = run(frame, root, level="exists", max_missing_ratio=1.0, max_missing_count=n)
    counts = result.per_sample["verify_status"].value_counts().to_dict()
    assert counts == {"ok": 3, "missing": n - 3}
    assert result.report["missing_identifiers"][:2] == ["f1/000003.jpg", "f0/000004.jpg"]


@pytest.mark.parametrize("slow_storage", [False, True])
def test_exists_level_with_a_filled_registry_finds_the_changed_file(tmp_path, monkeypatch,
                                                                     slow_storage):
    """Stats run in this thread on fast storage and on threads when the first chunk shows them
    waiting (forced here): both find the one file whose size changed, and only that one."""
    images = tmp_path / "images"
    keys = [f"c{i % 3}/{i:03d}.jpg" for i in range(40)]
    for i, key in enumerate(keys):
        jpeg(images / key, size=(16 + i, 16))
    frame = files_catalog(images, keys)
    db = tmp_path / "checksums.sqlite"
    assert run(frame, images, db).passed                       # decode level fills the registry
    jpeg(images / keys[17], size=(300, 200))
    monkeypatch.setattr(file_stats, "STAT_CHUNK", 4)
    if slow_storage:
        monkeypatch.setattr(file_stats, "SLOW_STAT_S", -1.0)
    result = run(frame, images, db, level="exists")
    bad = {k: v for k, v in statuses(result, frame).items() if v[0] != "ok"}
    assert bad == {keys[17]: ("corrupt", CHANGED)}
    assert "size" in result.report["corrupt"][0]["detail"]
    assert (result.per_sample["sha256"] != "").all()           # taken from the registry


def test_a_folder_named_like_an_image_is_missing_not_present(tmp_path):
    """Names alone are trusted only in folders without subfolders (their link count says so);
    elsewhere each entry's type is read, and a folder is not an image."""
    images = tmp_path / "images"
    jpeg(images / "a.jpg")
    (images / "b.jpg").mkdir()                         # a folder where an image should be
    jpeg(tmp_path / "flat" / "c.jpg")
    frame = pd.concat([files_catalog(images, ["a.jpg", "b.jpg"]),
                       files_catalog(tmp_path / "flat", ["c.jpg"])], ignore_index=True)
    result = run(frame, tmp_path, None, level="exists")
    found = {k: v[0] for k, v in statuses(result, frame).items()}
    assert found == {"a.jpg": "ok", "b.jpg": "missing", "c.jpg": "ok"}


@pytest.mark.parametrize("arrow_from", [1, 10_000])
def test_missing_files_are_found_by_set_or_by_arrow_alike(tmp_path, monkeypatch, arrow_from):
    monkeypatch.setattr(verify_mod, "ARROW_NAMES_FROM", arrow_from)
    images = tmp_path / "images"
    keys = [f"f{i % 2}/{i:02d}.jpg" for i in range(12)]
    for key in keys:
        if key not in ("f0/04.jpg", "f1/09.jpg"):
            jpeg(images / key)
    frame = files_catalog(images, keys)
    result = run(frame, images, None, level="exists")
    missing = sorted(k for k, v in statuses(result, frame).items() if v[0] == "missing")
    assert missing == ["f0/04.jpg", "f1/09.jpg"]


def test_hashes_become_arrow_text_over_the_digits_themselves():
    """A million hashes as Arrow text: over the fixed-width digits without a copy when every
    row was hashed; '' where a row was not; anything not 64 digits still comes out as it was."""
    import pyarrow as pa

    from ml.verify.checks import Findings
    found = Findings(200_000)
    digits = np.array([(f"{i:x}" * 64)[:64].encode() for i in range(1, 17)], dtype="S64")
    found.sha256[:] = digits[np.arange(200_000) % 16]
    whole = found.hashes(slice(None))
    assert whole.to_pylist()[:2] == [digits[0].decode(), digits[1].decode()]
    assert np.shares_memory(np.frombuffer(whole.buffers()[2], np.uint8),
                            found.sha256.view(np.uint8))                 # no copy
    found.sha256[::7] = b""
    some = np.arange(0, 200_000, 3)
    expected = [v.decode() for v in found.sha256[some]]
    assert found.hashes(some).to_pylist() == expected
    odd = Findings(2)
    odd.sha256[1] = b"abc"
    assert found.hashes(np.zeros(0, np.int64)).to_pylist() == []
    assert odd.hashes(slice(None)).to_pylist() == ["", "abc"]
    assert isinstance(whole, pa.StringArray)


def test_folders_listed_ahead_on_a_thread_are_matched_to_their_own_rows(tmp_path, monkeypatch):
    """Listings run ahead of the matching (a window of Listings.AHEAD folders): with more
    folders than the window, one that does not exist and the images folder itself listed from
    the start, every row is matched against its own folder's listing."""
    monkeypatch.setattr(verify_mod.Listings, "AHEAD", 2)
    images = tmp_path / "images"
    keys = [f"d{i % 7}/{i:03d}.jpg" for i in range(40)] + ["top.jpg", "gone/x.jpg"]
    absent = {"d3/003.jpg", "d6/013.jpg", "d0/035.jpg", "gone/x.jpg"}
    for key in keys:
        if key not in absent:
            jpeg(images / key)
    frame = files_catalog(images, keys)
    result = run(frame, images, None, level="exists")
    missing = {k for k, v in statuses(result, frame).items() if v[0] == "missing"}
    assert missing == absent


def test_an_empty_registry_is_not_looked_up(tmp_path, monkeypatch):
    """At level exists on a first run nothing is recorded: the million-key lookup (and its
    keys) is skipped when the registry holds nothing, and the result is the same."""
    images = tmp_path / "images"
    keys = [f"{i:02d}.jpg" for i in range(6)]
    for key in keys[1:]:
        jpeg(images / key)
    frame = files_catalog(images, keys)
    db = tmp_path / "checksums.sqlite"
    ChecksumRegistry(db).close()

    def refused(self, keys):
        raise AssertionError("an empty registry was looked up")

    monkeypatch.setattr(ChecksumRegistry, "lookup", refused)
    result = run(frame, images, db, level="exists")
    assert {k for k, v in statuses(result, frame).items() if v[0] == "missing"} == {"00.jpg"}
    assert ChecksumRegistry(db).is_empty()


def test_registry_keys_name_a_member_other_than_its_key_at_any_positions():
    """The registry's key is the source key, '#member' added where a container member is not
    the key itself; asked for some rows (in any order) or all, each row gets its own."""
    frame = catalog([{"source_key": "a.jpg", "path": "/img/a.jpg"},
                     {"source_key": "seq.h5", "path": "/img/seq.h5", "member": "f/0.jpg"},
                     {"source_key": "f/1.jpg", "path": "/img/seq.h5", "member": "f/1.jpg"},
                     {"source_key": "faces.rec", "path": "/img/faces.rec", "member": "17"}])
    rows = verify_mod.Rows.of(frame)
    every = ["a.jpg", "seq.h5#f/0.jpg", "f/1.jpg", "faces.rec#17"]
    assert rows.registry_keys().to_pylist() == every
    assert rows.keys_at(np.array([3, 0, 1])) == [every[3], every[0], every[1]]
    assert rows.keys_at(np.array([], np.int64)) == []


def test_the_images_folder_is_matched_by_name_and_the_rest_per_folder(tmp_path, monkeypatch):
    """A large catalog's rows in the images folder itself are matched against its listing by
    name (one join, no split); what is not there goes through the per-folder check,
    which still tells missing from invalid, lists each other folder once and the images
    folder only once."""
    monkeypatch.setattr(verify_mod, "ARROW_NAMES_FROM", 1)
    root = tmp_path / "images"
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        jpeg(root / name)
    (root / "d.jpg").mkdir()                             # a folder named like an image
    jpeg(tmp_path / "outside" / "secret.jpg")
    keys = ["a.jpg", "b.jpg", "gone.jpg", "d.jpg", "sub/c.jpg", "sub/gone.jpg", "sub/../a.jpg"]
    frame = pd.concat([files_catalog(root, keys), catalog([
        {"source_key": "x/../../outside/secret.jpg",
         "path": str(root / "x" / ".." / ".." / "outside" / "secret.jpg")}])],
        ignore_index=True)
    listed: list[str] = []
    real_list = verify_mod._list_folder
    monkeypatch.setattr(verify_mod, "_list_folder", lambda f: listed.append(f) or real_list(f))
    result = run(frame, root, level="exists")
    found = {k: v[0] for k, v in statuses(result, frame).items()}
    assert found == {"a.jpg": "ok", "b.jpg": "ok", "gone.jpg": "missing", "d.jpg": "missing",
                     "sub/c.jpg": "ok", "sub/gone.jpg": "missing", "sub/../a.jpg": "ok",
                     "x/../../outside/secret.jpg": "invalid"}
    assert sorted(listed) == sorted([str(root), str(root / "sub"), str(root / "sub" / "..")])


@pytest.mark.parametrize("arrow_from", [1, 10_000])
def test_a_file_name_that_is_not_utf8_does_not_stop_the_check(tmp_path, monkeypatch, arrow_from):
    """A folder may hold a file whose name is not UTF-8 (os.listdir keeps its bytes as
    surrogate escapes, which Arrow text refuses): it names no catalogued file, and every other
    file of its folder, the images folder itself or another, is still matched."""
    monkeypatch.setattr(verify_mod, "ARROW_NAMES_FROM", arrow_from)
    images = tmp_path / "images"
    for key in ("a.jpg", "sub/c.jpg"):
        jpeg(images / key)
    for folder in (images, images / "sub"):
        with open(os.fsencode(folder) + b"/bad\xff.jpg", "wb") as fh:
            fh.write(b"not text")
    keys = ["a.jpg", "gone.jpg", "sub/c.jpg", "sub/gone.jpg"]
    frame = files_catalog(images, keys)
    result = run(frame, images, None, level="exists")
    assert {k: v[0] for k, v in statuses(result, frame).items()} == {
        "a.jpg": "ok", "gone.jpg": "missing", "sub/c.jpg": "ok", "sub/gone.jpg": "missing"}


def test_names_after_the_images_folder_are_cut_by_bytes_and_never_match_outside_it():
    """The images folder's rows are matched by what follows its prefix; a path that does not
    start with the prefix (a sibling folder sharing its first letters, another tree whose
    byte count happens to line up) gets no name at all, so it can never match a listed one."""
    import pyarrow as pa

    from ml.verify.checks import _names_after, _not_among
    paths = pa.array(["/d/é/x.jpg", "/d/éz/x.jpg", "/d/e/xy.jpg", "/d/é/sub/ü.jpg", "/d/é/"])
    names = _names_after(paths, "/d/é/")
    assert names.to_pylist() == ["x.jpg", None, None, "sub/ü.jpg", ""]
    listed = pa.array(["x.jpg", "y.jpg", "ü.jpg"])
    assert _not_among(names, listed).tolist() == [False, True, True, True, True]
