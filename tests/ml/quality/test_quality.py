"""Quality signals (cleanvision's issue names) and duplicate groups, exact and near."""

from __future__ import annotations

import io
import itertools
import time

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from ml.quality.duplicates import components, duplicate_groups, exact_groups, near_pairs
from ml.quality import signals as sig
from ml.quality.signals import SignalBatch, image_signals


def photo(seed: int, size=(400, 300)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).resize(
        size, Image.Resampling.BICUBIC)


def reencoded(image: Image.Image, quality: int = 60) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def distance(a: Image.Image, b: Image.Image) -> int:
    return bin(image_signals(a).phash ^ image_signals(b).phash).count("1")


def test_copies_stay_close_and_different_photos_far():
    base = photo(0)
    for copy in (reencoded(base), base.resize((200, 150)),
                 ImageEnhance.Brightness(base).enhance(1.3), base.crop((4, 3, 396, 297))):
        assert distance(base, copy) <= 8
    assert min(distance(base, photo(s)) for s in range(1, 20)) >= 16


def test_signals_flag_what_cleanvision_names():
    base = photo(0)
    plain = image_signals(base)
    assert image_signals(base.filter(ImageFilter.GaussianBlur(8))).blurriness < 0.6 * plain.blurriness
    assert image_signals(ImageEnhance.Brightness(base).enhance(0.2)).brightness_p99 < 0.32
    washed_out = Image.blend(base, Image.new("RGB", base.size, "white"), 0.95)
    assert 1 - image_signals(washed_out).brightness_p5 < 0.05
    assert image_signals(base.convert("L").convert("RGB")).grayscale and not plain.grayscale
    flat = image_signals(Image.new("RGB", (300, 200), (120, 120, 120)))
    assert 0.1 * flat.entropy < 0.3 < 0.1 * plain.entropy


@pytest.mark.parametrize("mode", ["L", "I;16", "CMYK", "P", "RGBA", "LA", "1", "F"])
def test_any_mode_gets_signals(mode):
    image = photo(3)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)
    elif mode == "F":
        image = Image.fromarray(np.asarray(image.convert("L"), np.float32) / 255.0)
    else:
        image = image.convert(mode)
    signals = image_signals(image)
    assert signals.phash is not None and 0 <= signals.brightness_p5 <= signals.brightness_p99 <= 1


def test_batched_measures_equal_each_images_own_pillow_and_numpy_reference():
    """A batch pastes its working copies into one shared RGBX block and measures them
    together; each image's signals equal those computed from that image alone with Pillow
    (convert L, FIND_EDGES without its border, entropy) and numpy (the 2 x 2 grid's brightness
    percentiles and colour test)."""
    rng = np.random.default_rng(11)
    images = [photo(s, (80, 60)) for s in range(6)] + [
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)),
        photo(7, (80, 60)).convert("L").convert("RGB")]
    batch = SignalBatch()
    for row, image in enumerate(images):
        batch.add(row, image)
    measured = batch.measure(len(images))
    for row, image in enumerate(images):
        ours = measured.row(row)
        grey = image.convert("L")
        edges = np.asarray(grey.filter(ImageFilter.FIND_EDGES), np.float64)[1:-1, 1:-1]
        assert ours.blurriness == pytest.approx(edges.std(), rel=1e-6)
        counts = np.bincount(np.asarray(grey).ravel(), minlength=256)
        assert ours.grayscale_std == pytest.approx(counts.std() * sig.HISTOGRAM_PIXELS / 4800, rel=1e-6)
        assert ours.entropy == pytest.approx(image.entropy(), rel=1e-6)
        grid = np.asarray(image, np.float64)[::2, ::2].reshape(-1, 3)
        brightness = np.sort(np.sqrt(grid ** 2 @ [0.241, 0.691, 0.068]) / 255)
        assert ours.brightness_p5 == pytest.approx(brightness[int(0.05 * 1199)], abs=1e-6)
        assert ours.brightness_p99 == pytest.approx(brightness[int(0.99 * 1199)], abs=1e-6)
        spread = np.abs(np.diff(grid, axis=1)).max(axis=1)
        assert ours.grayscale == (np.count_nonzero(spread > sig.GREY_TOLERANCE) <= 12)
    assert measured.row(7).grayscale and not measured.row(0).grayscale


@pytest.mark.parametrize("pending_bytes", [sig.PENDING_BYTES, 20_000])
def test_signals_measured_in_a_batch_equal_one_at_a_time(monkeypatch, pending_bytes):
    """Whether the copies wait for the end of the task or are measured early (memory bound)."""
    monkeypatch.setattr(sig, "PENDING_BYTES", pending_bytes)
    images = [photo(s, size) for s, size in enumerate([(400, 300), (640, 480), (400, 300),
                                                       (90, 700), (5, 40), (300, 300)])]
    batch = SignalBatch()
    for row, image in zip((5, 0, 2, 3, 1, 4), images):
        batch.add(row, image)
    columns = batch.measure(7)
    for row, image in zip((5, 0, 2, 3, 1, 4), images):
        assert columns.row(row) == image_signals(image)
    assert not columns.measured[6] and columns.columns()["phash"].isna().tolist() == [
        False, True, False, False, False, False, True]


def test_an_image_too_small_for_the_hash_has_none():
    assert image_signals(Image.new("RGB", (5, 40), (10, 200, 30))).phash is None
    assert image_signals(Image.new("L", (8, 8))).phash is not None


def test_exact_groups_by_content():
    groups = exact_groups(["a", "b", "a", "c", "b", "", ""])
    assert groups.tolist() == [0, 1, 0, -1, 1, -1, -1]


def test_near_pairs_match_the_brute_force_answer():
    rng = np.random.default_rng(5)
    hashes = rng.integers(0, 2**62, 400, dtype=np.int64).astype(np.uint64)
    for i in range(0, 400, 8):                        # plant copies 0..10 bits away
        flip = rng.choice(64, int(rng.integers(0, 11)), replace=False)
        hashes[i + 1] = hashes[i] ^ np.uint64(sum(1 << int(f) for f in flip))
    a, b, dist = near_pairs(hashes, 8)
    found = set(zip(a.tolist(), b.tolist()))
    truth = {(i, j) for i, j in itertools.combinations(range(400), 2)
             if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= 8}
    assert found == truth and len(truth) > 30
    assert all(bin(int(hashes[x]) ^ int(hashes[y])).count("1") == d
               for x, y, d in zip(a.tolist(), b.tolist(), dist.tolist()))


def test_groups_join_chains_and_leave_loners_out():
    labels = components(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert labels.tolist() == [0, 0, 0, 3, 4, 4]
    found = duplicate_groups(["x", "y", "x", "z"], [1, 3, None, 2**63], 1)
    assert found.exact_group.tolist() == [0, -1, 0, -1]
    assert found.near_group.tolist() == [0, 0, -1, -1]        # 1 and 3 differ in one bit
    assert found.pairs.to_dict("list") == {"row_a": [0], "row_b": [1], "distance": [1]}


@pytest.mark.slow
def test_a_million_hashes_group_in_well_under_a_minute():
    rng = np.random.default_rng(7)
    hashes = rng.integers(0, 2**63, 1_000_000, dtype=np.int64).astype(np.uint64)
    hashes[1::100_000] = hashes[0::100_000] ^ np.uint64(0b1011)     # ten planted copies, 3 bits
    started = time.perf_counter()
    a, b, _ = near_pairs(hashes, 8)
    took = time.perf_counter() - started
    found = set(zip(a.tolist(), b.tolist()))
    assert all((i, i + 1) in found for i in range(0, 1_000_000, 100_000))
    assert took < 120, f"{took:.0f} s"      # 20 s measured on the 2-core machine; 60 s is the target


def test_the_signals_draft_keeps_the_longer_side_and_a_banner_height(tmp_path):
    from ml.imageio import decode
    for size, expected in (((1920, 1280), (240, 160)), ((640, 480), (80, 60)),
                           ((300, 40), (150, 20))):
        path = tmp_path / f"{size[0]}.jpg"
        photo(1, size).save(path, "JPEG", quality=90)
        with decode(path, draft_longest_side=64) as image:
            assert image.size == expected, size


def test_rows_sharing_near_hashes_are_paired_every_one_with_every_other():
    """Two distinct hashes one bit apart, held by 2 and 3 rows: the 2 x 3 cross pairs at
    distance 1 and the pairs inside each hash at 0 (found for all pairs at once)."""
    h = np.uint64(0x0F0F_3C3C_A5A5_9999)
    hashes = np.array([h, h, h ^ np.uint64(1), h ^ np.uint64(1), h ^ np.uint64(1),
                       ~h], dtype=np.uint64)
    a, b, dist = near_pairs(hashes, 2)
    found = {(int(x), int(y)): int(d) for x, y, d in zip(a, b, dist)}
    assert found == {(0, 1): 0, (2, 3): 0, (2, 4): 0, (3, 4): 0,
                     **{(x, y): 1 for x in (0, 1) for y in (2, 3, 4)}}


def test_a_chain_of_near_pairs_over_many_units_is_a_cluster_not_a_duplicate():
    import pandas as pd

    from ml.columns import Codes
    from ml.quality.leakage import MAX_MERGED_UNITS, merged_units, without_clusters
    n = MAX_MERGED_UNITS + 4
    units = Codes.of(pd.Series([f"id_{i}" for i in range(n)] + ["id_x", "id_y"]))
    chain = pd.DataFrame({"row_a": list(range(n - 1)) + [n], "row_b": list(range(1, n)) + [n + 1],
                          "kind": "near", "distance": 3})
    kept, clusters = without_clusters(units, chain)
    assert len(clusters) == n - 1 and kept[["row_a", "row_b"]].values.tolist() == [[n, n + 1]]
    merged = merged_units(units, kept).values()
    assert merged.iat[n] == merged.iat[n + 1] == "id_x" and merged.iat[0] == "id_0"


def test_merged_units_take_the_smallest_id_of_their_group_and_keep_the_others():
    import pandas as pd

    from ml.columns import Codes
    from ml.quality.leakage import merged_units
    units = Codes.of(pd.Series(["u9", "u3", "u9", "u7", "u1", "u5", "u7"]))
    pairs = pd.DataFrame({"row_a": [0, 3], "row_b": [1, 4], "kind": "exact", "distance": 0})
    merged = merged_units(units, pairs)
    assert merged.values().tolist() == ["u3", "u3", "u3", "u1", "u1", "u5", "u1"]
    assert len(merged.names) == 3 and list(merged.names) == ["u3", "u1", "u5"]
