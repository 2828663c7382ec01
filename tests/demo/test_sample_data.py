"""The bundled sample data: layout contracts, determinism, planted faults, learnable content."""

from __future__ import annotations

import filecmp
import io
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from demo import sample_data as sd
from ml.errors import ConfigError, ImageError
from ml.imageio import decode

N_IDS, PER_ID = 20, 4


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> sd.FaceSetInfo:
    return sd.generate_faces(tmp_path_factory.mktemp("sample") / "faces", n_identities=N_IDS,
                             per_identity=PER_ID, workers=2)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _gray(path: Path, size: int = 112) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L").resize((size, size), Image.BILINEAR), np.float32)


# ---- faces ----------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2], ids=["fork", "forkserver"])
def test_faces_same_bytes_every_run_whatever_the_worker_count(tmp_path, monkeypatch, threads,
                                                              request):
    # threads=2: the pool must not fork a multi-threaded process (forkserver workers instead)
    if threads == 1:
        request.getfixturevalue("fork_anyway")
    else:
        monkeypatch.setattr("ml.process_pool.thread_count", lambda: threads)
    one = sd.generate_faces(tmp_path / "a", n_identities=3, per_identity=4, workers=1)
    two = sd.generate_faces(tmp_path / "b", n_identities=3, per_identity=4, workers=2)
    assert _tree_bytes(one.root) == _tree_bytes(two.root)
    np.testing.assert_array_equal(one.landmarks, two.landmarks)


def test_faces_layout_and_labels_file(faces):
    assert sorted(p.name for p in faces.root.iterdir()) == [".complete", "PLANTED.json", "images",
                                                            "labels.h5"]
    assert sorted(p.name for p in faces.images_dir.iterdir()) == [f"id_{i:04d}" for i in range(N_IDS)]
    with h5py.File(faces.labels_file, "r") as h5:
        assert h5.attrs["description"]
        assert h5py.check_string_dtype(h5["image_ids"].dtype).encoding == "utf-8"
        ids = [s.decode() for s in h5["image_ids"][()]]
        identity, age = h5["labels/identity"][()], h5["labels/age"][()]
    assert ids == [f"id_{i:04d}/{k:02d}" for i in range(N_IDS) for k in range(PER_ID)]
    assert identity.dtype == np.int64 and age.dtype == np.float32
    assert identity.tolist() == [int(s[3:7]) for s in ids]
    null = int(np.isnan(age).sum())
    assert null == round(0.05 * len(ids))                    # ~5% null labels, like the golden file
    for i in range(N_IDS):                                   # age is the person's, not the image's
        assert len(set(age[identity == i][~np.isnan(age[identity == i])].tolist())) <= 1
    bad = set(faces.missing) | set(faces.corrupt)
    for image_id in [i for i in ids if i not in bad][:5]:
        with Image.open(faces.path_of(image_id)) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (250, 250))


def test_faces_planted_files_are_really_missing_or_corrupt(faces):
    planted = json.loads(faces.planted_file.read_text())
    assert planted == {"missing": faces.missing, "corrupt": faces.corrupt}
    assert len(planted["missing"]) == 3 and len(planted["corrupt"]) == 3
    assert len(planted["missing"]) + len(planted["corrupt"]) <= 0.01 * 100 * 8  # default threshold
    for image_id in planted["missing"]:
        assert image_id in faces.image_ids and not faces.path_of(image_id).exists()
    for image_id, reason in planted["corrupt"].items():
        with pytest.raises(ImageError) as err:
            decode(faces.path_of(image_id))
        assert err.value.reason == reason                    # the verifier's own word for it
    assert sorted(planted["corrupt"].values()) == ["empty", "not an image", "truncated"]
    bad = set(planted["missing"]) | set(planted["corrupt"])
    for image_id in faces.image_ids:
        if image_id not in bad:
            decode(faces.path_of(image_id))


def test_faces_landmarks_sit_on_the_casia_reference_points(faces):
    scale = 112 / faces.size
    per_image = np.linalg.norm(faces.landmarks * scale - sd.REFERENCE_112, axis=2)
    per_identity = np.linalg.norm(faces.identity_landmarks * scale - sd.REFERENCE_112, axis=2)
    assert per_image[:, 2:].mean() < 3.0                     # nose tip and mouth corners, posed
    assert per_identity[:, 2:].mean() < 2.0                  # before the per-image pose
    assert np.abs(faces.identity_landmarks[:, 2] * scale - sd.REFERENCE_112[2]).max() < 1e-3
    with h5py.File(faces.labels_file, "r") as h5:
        np.testing.assert_allclose(h5["landmarks"][()], faces.landmarks)
        assert h5["landmarks"].attrs["points"] == ",".join(sd.LANDMARK_NAMES)


def test_faces_eye_landmarks_mark_real_eyes(faces):
    """The drawn eye (white + iris) is high-contrast; the cheek 25 px below is not."""
    hits, total = 0, 0
    for image_id, marks in zip(faces.image_ids, faces.landmarks):
        if not faces.path_of(image_id).exists() or image_id in faces.corrupt:
            continue
        gray = _gray(faces.path_of(image_id), faces.size)
        for x, y in marks[:2]:
            x, y = int(round(x)), int(round(y))
            eye, cheek = gray[y - 4:y + 5, x - 6:x + 7], gray[y + 21:y + 30, x - 6:x + 7]
            hits += eye.std() > cheek.std() + 5
            total += 1
    assert hits / total > 0.8


def _hand_features(path: Path) -> np.ndarray:
    """A cheap identity feature: chromaticity and contrast-normalised layout of the face box."""
    rgb = np.asarray(Image.open(path).convert("RGB").resize((112, 112), Image.BILINEAR), np.float32)
    face = rgb[20:104, 14:84]
    chroma = face / (face.sum(axis=2, keepdims=True) + 1.0)
    small = np.asarray(Image.fromarray(face.astype(np.uint8)).convert("L").resize((12, 12)), np.float32)
    small = (small - small.mean()) / (small.std() + 1e-6)
    return np.concatenate([chroma[..., :2].reshape(-1)[::7] * 20, small.ravel()])


def test_faces_identities_are_distinguishable_from_other_images_of_the_person(faces):
    bad = set(faces.missing) | set(faces.corrupt)
    keep = [i for i, s in enumerate(faces.image_ids) if s not in bad]
    feats = np.stack([_hand_features(faces.path_of(faces.image_ids[i])) for i in keep])
    labels = faces.identities[keep]
    correct = 0
    for j in range(len(keep)):                               # leave-one-out nearest class mean
        others = np.arange(len(keep)) != j
        means = {c: feats[others & (labels == c)].mean(axis=0)
                 for c in np.unique(labels[others])}
        guess = min(means, key=lambda c: np.linalg.norm(feats[j] - means[c]))
        correct += guess == labels[j]
    accuracy = correct / len(keep)
    assert accuracy > 8 / N_IDS                              # chance is 1/20


def test_faces_vary_per_image_so_raw_pixels_are_no_shortcut(faces):
    same, different = [], []
    vectors = {}
    for image_id in faces.image_ids[: 8 * PER_ID]:
        if image_id in faces.missing or image_id in faces.corrupt:
            continue
        v = _gray(faces.path_of(image_id)).ravel()
        vectors[image_id] = v / np.linalg.norm(v)
    ids = list(vectors)
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            (same if ids[a][:7] == ids[b][:7] else different).append(vectors[ids[a]] @ vectors[ids[b]])
    # every same-identity pair differs from its partner (pose, background, light, expression) ...
    assert max(same) < 0.995
    # ... and raw-pixel cosine similarity ranks pairs poorly: the two distributions overlap a lot
    assert np.mean(np.array(different)[:, None] > np.array(same)[None, :]) > 0.15


def test_faces_refuse_sizes_too_small_to_learn(tmp_path):
    with pytest.raises(ConfigError, match="at least 2 identities"):
        sd.generate_faces(tmp_path / "f", n_identities=1)
    with pytest.raises(ConfigError, match="12 images in all"):
        sd.generate_faces(tmp_path / "f", n_identities=3, per_identity=2)
    assert not (tmp_path / "f").exists()


# ---- pairs ----------------------------------------------------------------------------------

def test_pairs_are_matched_non_square_and_the_after_is_a_fixed_edit(tmp_path):
    written = sd.generate_pairs(tmp_path / "pairs", n_pairs=5)
    again = sd.generate_pairs(tmp_path / "again", n_pairs=5)
    assert _tree_bytes(tmp_path / "pairs") == _tree_bytes(tmp_path / "again")
    names = sorted(p.name for p in (tmp_path / "pairs").iterdir() if not p.name.startswith("."))
    assert names == sorted(f"{i:04d}_{r}.jpg" for i in range(5) for r in ("before", "after"))
    sizes = []
    for before_path, after_path in written:
        before, after = Image.open(before_path), Image.open(after_path)
        assert before.size == after.size and before.width != before.height
        assert 320 <= before.width <= 480 and 240 <= before.height <= 360
        sizes.append(before.size)
        b = np.asarray(before.convert("RGB"), np.float32)
        a = np.asarray(after, np.float32)
        redone = np.asarray(sd.after_transform(before), np.float32)
        assert np.abs(a - b).mean() > 6                      # the identity mapping is a poor model
        assert np.abs(a - redone).mean() < 2.5               # the edit is the same fixed function
    assert (333, 251) in sizes and len(set(sizes)) == len(sizes)
    assert len(again) == 5


def test_default_pair_sizes_are_varied_and_never_square():
    sizes = sd.pair_sizes(40)
    assert len(sizes) == 40 and len(set(sizes)) > 30
    assert all(w != h and 320 <= w <= 480 and 240 <= h <= 360 for w, h in sizes)
    assert any(w % 2 and h % 2 for w, h in sizes)


# ---- sequences ------------------------------------------------------------------------------

def test_sequences_follow_the_solo_learn_layout_and_decode(tmp_path, golden):
    path = sd.generate_sequences(tmp_path / "sequences", n_classes=4, objects_per_class=2, frames=3)
    assert path == tmp_path / "sequences" / "sequences.h5"
    assert sd.read_marker(path.parent)["set"] == "sequences"
    with h5py.File(golden / "hdf5" / "sequences.h5", "r") as g:
        golden_name = next(iter(g[next(iter(g))]))
    name_re = re.compile(r"^obj\d+_\d{3}\.jpg$")
    assert name_re.match(golden_name)
    frames: dict[tuple[str, int], list[np.ndarray]] = {}
    with h5py.File(path, "r") as h5:
        assert sorted(h5) == sorted(sd.SEQUENCE_CLASSES)
        for cls in h5:
            assert sorted(h5[cls]) == [f"obj{k}_{f:03d}.jpg" for k in range(2) for f in range(3)]
            for name, ds in h5[cls].items():
                assert name_re.match(name) and ds.dtype == np.uint8 and ds.ndim == 1
                img = Image.open(io.BytesIO(ds[()].tobytes()))
                assert (img.format, img.size, img.mode) == ("JPEG", (64, 64), "RGB")
                frames.setdefault((cls, int(name[3])), []).append(np.asarray(img, np.float32))
    # an object changes smoothly: consecutive frames are closer than other classes' objects
    step = np.mean([np.abs(f[1] - f[0]).mean() for f in frames.values()])
    across = np.mean([np.abs(frames[(a, 0)][0] - frames[(b, 0)][0]).mean()
                      for a in sd.SEQUENCE_CLASSES for b in sd.SEQUENCE_CLASSES if a != b])
    assert 0 < step < across / 2
    copy = sd.generate_sequences(tmp_path / "copy", n_classes=4, objects_per_class=2, frames=3)
    assert filecmp.cmp(path, copy, shallow=False)


# ---- iNaturalist ----------------------------------------------------------------------------

def test_inat_coco_json_is_consistent_imbalanced_and_planted(tmp_path, golden):
    counts = (10, 5, 3, 2)
    paths = sd.generate_inat(tmp_path / "inat", train_counts=counts)
    train, val = (json.loads(paths[s].read_text()) for s in ("train", "val"))
    golden_doc = json.loads((golden / "inat" / "train2017.json").read_text())
    planted = json.loads((tmp_path / "inat" / "PLANTED.json").read_text())
    assert set(golden_doc["images"][0]) <= set(train["images"][0])
    all_ids = [im["id"] for doc in (train, val) for im in doc["images"]]
    assert len(set(all_ids)) == len(all_ids)
    name_re = re.compile(r"^train_val_images/([^/]+)/([^/]+)/[0-9a-f]{32}\.jpg$")
    for doc in (train, val):
        categories = {c["id"]: c for c in doc["categories"]}
        assert len({c["supercategory"] for c in categories.values()}) == 3
        images = {im["id"]: im for im in doc["images"]}
        assert sorted(a["image_id"] for a in doc["annotations"]) == sorted(images)
        for ann in doc["annotations"]:
            image, category = images[ann["image_id"]], categories[ann["category_id"]]
            match = name_re.match(image["file_name"])
            assert match and match.groups() == (category["supercategory"], category["name"])
            assert 200 <= image["width"] <= 400 and 200 <= image["height"] <= 400
            assert image["width"] != image["height"]
            path = tmp_path / "inat" / image["file_name"]
            if image["file_name"] in planted["missing"]:
                assert not path.exists()
            elif image["file_name"] in planted["corrupt"]:
                with pytest.raises(ImageError, match="truncated"):
                    decode(path)
            else:
                assert decode(path).size == (image["width"], image["height"])
    per_category = np.bincount([a["category_id"] for a in train["annotations"]])
    assert per_category.tolist() == list(counts)
    assert np.bincount([a["category_id"] for a in val["annotations"]]).tolist() == [2, 1, 1, 1]
    assert len(planted["missing"]) == 1 and list(planted["corrupt"].values()) == ["truncated"]
    train_names = {im["file_name"] for im in train["images"]}
    assert set(planted["missing"]) | set(planted["corrupt"]) <= train_names
    assert max(sd.INAT_TRAIN_COUNTS) / min(sd.INAT_TRAIN_COUNTS) >= 10   # the demo's imbalance


def test_inat_categories_look_different(tmp_path):
    """Mean colour of the motif region separates a black raven from a yellow sunflower."""
    paths = sd.generate_inat(tmp_path / "inat", train_counts=(4, 4))
    doc = json.loads(paths["train"].read_text())
    planted = json.loads((tmp_path / "inat" / "PLANTED.json").read_text())
    means = {0: [], 1: []}
    for image, ann in zip(doc["images"], doc["annotations"]):
        if image["file_name"] in planted["missing"] or image["file_name"] in planted["corrupt"]:
            continue
        rgb = np.asarray(Image.open(tmp_path / "inat" / image["file_name"]).convert("RGB"), np.float32)
        h, w = rgb.shape[:2]
        centre = rgb[h * 2 // 5: h * 3 // 5, w * 2 // 5: w * 3 // 5]
        means[ann["category_id"]].append(centre[..., 0].mean() - centre[..., 2].mean())
    assert max(means[0]) < min(means[1])                      # sunflowers are far more yellow


# ---- generate_all and the command line --------------------------------------------------------

def test_complete_sets_are_kept_unless_forced(tmp_path):
    made = sd.generate_all(tmp_path, only="sequences")
    assert [(r.name, r.status) for r in made] == [("sequences", "made")]
    marker = tmp_path / "sequences" / sd.COMPLETE_MARKER
    first = marker.stat().st_ino
    assert sd.generate_all(tmp_path, only=["sequences"])[0].status == "kept"
    assert marker.stat().st_ino == first
    assert sd.generate_all(tmp_path, only="sequences", force=True)[0].status == "made"
    assert marker.stat().st_ino != first
    assert sd.generate_all(tmp_path, only="sequences", seed=1)[0].status == "made"  # other seed
    assert sd.read_marker(tmp_path / "sequences")["seed"] == 1


def test_a_set_without_its_marker_is_rebuilt(tmp_path):
    (tmp_path / "sequences").mkdir()
    (tmp_path / "sequences" / "sequences.h5").write_bytes(b"half written")
    assert sd.generate_all(tmp_path, only="sequences")[0].status == "made"
    with h5py.File(tmp_path / "sequences" / "sequences.h5", "r") as h5:
        assert len(h5["ball"]) == 60


def test_a_failed_build_leaves_the_previous_set_in_place(tmp_path, monkeypatch):
    sd.generate_all(tmp_path, only="sequences")
    before = _tree_bytes(tmp_path / "sequences")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sd, "_render_frame", broken)
    with pytest.raises(RuntimeError):
        sd.generate_all(tmp_path, only="sequences", force=True)
    assert _tree_bytes(tmp_path / "sequences") == before
    assert [p.name for p in tmp_path.iterdir()] == ["sequences"]   # no temp folder left behind


def test_cli_reports_what_it_made_and_refuses_unknown_sets(tmp_path, capsys):
    assert sd.main(["--out", str(tmp_path), "--only", "sequences"]) == 0
    out = capsys.readouterr().out
    assert "sequences" in out and "made" in out and str(tmp_path / "sequences") in out
    assert sd.main(["--out", str(tmp_path), "--only", "sequences"]) == 0
    assert "kept" in capsys.readouterr().out
    assert sd.main(["--out", str(tmp_path), "--only", "faces,selfies"]) == 2
    err = capsys.readouterr().err
    assert "selfies" in err and "faces,pairs,sequences,inat" in err
    assert not (tmp_path / "faces").exists()
    assert sd.main(["--out", str(tmp_path), "--seed", "-1"]) == 2
    assert "non-negative" in capsys.readouterr().err


def test_inat_plants_duplicates_and_images_the_quality_report_flags(tmp_path):
    from ml.quality.issues import QualityConfig, flag_issues, issue_scores
    from ml.quality.signals import image_signals

    sd.generate_inat(tmp_path / "inat")
    planted = json.loads((tmp_path / "inat" / sd.PLANTED_FILE).read_text())
    [[original, copy]] = planted["duplicates"]["exact"]
    assert (tmp_path / "inat" / original).read_bytes() == (tmp_path / "inat" / copy).read_bytes()
    assert original.split("/")[2] != copy.split("/")[2], "the copy carries another label"
    [[first, second]] = planted["duplicates"]["near"]
    hashes = [image_signals(Image.open(tmp_path / "inat" / f)).phash for f in (first, second)]
    assert bin(hashes[0] ^ hashes[1]).count("1") <= 8
    assert (tmp_path / "inat" / first).read_bytes() != (tmp_path / "inat" / second).read_bytes()
    rows = []
    for issue, files in planted["quality"].items():
        image = Image.open(tmp_path / "inat" / files[0])
        rows.append({**image_signals(image).__dict__, "width": image.width,
                     "height": image.height, "planted": issue})
    import pandas as pd
    table = pd.DataFrame(rows)
    flags = flag_issues(issue_scores(table), QualityConfig())
    assert all(flags.loc[i, issue] for i, issue in enumerate(table["planted"]))


def test_a_set_made_by_an_older_generator_is_rebuilt(tmp_path):
    sd.generate_all(tmp_path, only="inat")
    marker = tmp_path / "inat" / sd.COMPLETE_MARKER
    doc = json.loads(marker.read_text())
    marker.write_text(json.dumps({**doc, "version": 1}))
    [result] = sd.generate_all(tmp_path, only="inat")
    assert result.status == "made"
    [again] = sd.generate_all(tmp_path, only="inat")
    assert again.status == "kept"
