"""The insightface / AdaFace verification protocol: folds, thresholds, flip fusion, per-set scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.errors import DatasetError, FormatError
from ml.eval.face_verification import (THRESHOLDS, contiguous_folds, evaluate_distances,
                                       evaluate_embeddings, evaluate_sets, fuse_with_flip,
                                       memfile_pair_distances, pixel_embedding,
                                       summary_figures, validation_sets)
from ml.formats.insightface_bin import build_validation_memfile, open_validation_memfile


def reference_calculate_roc(thresholds, dist, issame, nrof_folds=10):
    """insightface's calculate_roc + calculate_accuracy, loop for loop (sklearn's KFold without
    shuffling written out), as the oracle for the vectorised implementation."""
    n = len(issame)
    fold_sizes = np.full(nrof_folds, n // nrof_folds, dtype=int)
    fold_sizes[: n % nrof_folds] += 1
    current, folds = 0, []
    for size in fold_sizes:
        test = np.arange(current, current + size)
        folds.append((np.setdiff1d(np.arange(n), test), test))
        current += size

    def calculate_accuracy(threshold, d, actual):
        predict = np.less(d, threshold)
        tp = np.sum(np.logical_and(predict, actual))
        tn = np.sum(np.logical_and(np.logical_not(predict), np.logical_not(actual)))
        return float(tp + tn) / d.size

    accuracy, best = np.zeros(nrof_folds), np.zeros(nrof_folds)
    for fold_idx, (train_set, test_set) in enumerate(folds):
        acc_train = np.zeros(len(thresholds))
        for t, threshold in enumerate(thresholds):
            acc_train[t] = calculate_accuracy(threshold, dist[train_set], issame[train_set])
        best_index = np.argmax(acc_train)
        best[fold_idx] = thresholds[best_index]
        accuracy[fold_idx] = calculate_accuracy(thresholds[best_index], dist[test_set],
                                                issame[test_set])
    return accuracy, best


def test_thresholds_are_the_protocols():
    assert len(THRESHOLDS) == 400 and THRESHOLDS[0] == 0 and THRESHOLDS[-1] == pytest.approx(3.99)


def test_folds_are_contiguous_like_kfold_without_shuffle():
    folds = contiguous_folds(403, 10)
    assert [len(f) for f in folds] == [41, 41, 41] + [40] * 7
    assert np.array_equal(np.concatenate(folds), np.arange(403))
    assert all(np.array_equal(f, np.arange(f[0], f[-1] + 1)) for f in folds)
    with pytest.raises(DatasetError, match="at least 10 pairs"):
        contiguous_folds(5, 10)


@pytest.mark.parametrize("n_pairs, seed", [(400, 0), (403, 1), (120, 2)])
def test_matches_insightface_reference_on_overlapping_scores(n_pairs, seed):
    rng = np.random.default_rng(seed)
    issame = rng.random(n_pairs) < 0.5
    # same pairs nearer on average, with overlap so the threshold choice matters
    dist = np.clip(np.where(issame, rng.normal(1.0, 0.35, n_pairs), rng.normal(1.6, 0.35, n_pairs)),
                   0, 4)
    result = evaluate_distances(dist, issame)
    accuracy, best = reference_calculate_roc(THRESHOLDS, dist, issame)
    np.testing.assert_allclose(result.fold_accuracies, accuracy)
    np.testing.assert_allclose(result.best_thresholds, best)
    assert result.accuracy == pytest.approx(accuracy.mean())
    assert result.accuracy_std == pytest.approx(accuracy.std())
    assert 0.55 < result.accuracy < 0.97
    assert result.tpr.shape == result.fpr.shape == THRESHOLDS.shape


def test_separable_pairs_score_one_and_random_ones_about_half():
    rng = np.random.default_rng(0)
    issame = np.tile([True, False], 200)
    separable = np.where(issame, 0.3, 1.9) + rng.uniform(0, 0.2, 400)
    result = evaluate_distances(separable, issame)
    assert result.accuracy == 1.0 and result.accuracy_std == 0.0
    first_separating = THRESHOLDS[THRESHOLDS > separable[issame].max()][0]   # argmax takes the first
    assert np.all(result.best_thresholds == first_separating)
    chance = evaluate_distances(rng.uniform(0, 4, 400), issame)
    assert 0.35 < chance.accuracy < 0.65


def test_embeddings_are_normalised_pairs_of_consecutive_rows():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(100, 16))
    # pair k: rows 2k and 2k+1; same pairs share a base vector (scaled: norms must not matter)
    rows, issame = [], []
    for k in range(100):
        same = k % 2 == 0
        rows += [base[k] * 5.0, base[k] * 0.1 if same else base[(k + 1) % 100]]
        issame.append(same)
    result = evaluate_embeddings(np.stack(rows), issame)
    assert result.accuracy == 1.0


def test_flip_fusion_sums_raw_embeddings_as_insightface_and_adaface_and_is_mirror_invariant():
    torch.manual_seed(0)
    images = torch.randn(4, 3, 8, 8)
    weights = torch.randn(3 * 8 * 8, 5)

    def embed(x):
        return x.flatten(1) @ weights

    fused = fuse_with_flip(embed, images)
    # insightface test(): embeddings = emb(x) + emb(flip x); sklearn normalize(embeddings)
    raw_sum = embed(images) + embed(images.flip(3))
    torch.testing.assert_close(fused, raw_sum / raw_sum.norm(dim=1, keepdim=True))
    # the views' norms differ here, so normalising each view first gives another direction
    a = torch.nn.functional.normalize(embed(images), dim=1)
    b = torch.nn.functional.normalize(embed(images.flip(3)), dim=1)
    per_view = torch.nn.functional.normalize(a + b, dim=1)
    assert (fused - per_view).abs().max() > 1e-3
    torch.testing.assert_close(fused, fuse_with_flip(embed, images.flip(3)))
    torch.testing.assert_close(fused.norm(dim=1), torch.ones(4))


def _memfile(tmp_path, dtype="float32"):
    """Two sets: 'easy' (same pairs are identical images) and 'hard' (random images)."""
    rng = np.random.default_rng(0)

    def image():
        return rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)

    easy_images, easy_issame, hard_images, hard_issame = [], [], [], []
    for k in range(20):
        first = image()
        easy_images += [first, first if k % 2 == 0 else image()]
        easy_issame.append(k % 2 == 0)
        hard_images += [image(), image()]
        hard_issame.append(k % 2 == 0)
    path = tmp_path / f"val_{dtype}.dat"
    build_validation_memfile(path, {"easy": (easy_images, easy_issame),
                                    "hard": (hard_images, hard_issame)},
                             image_size=16, dtype=dtype)
    return open_validation_memfile(path)


def test_per_set_scores_from_a_memfile_and_raw_pixel_baseline(tmp_path):
    memfile = _memfile(tmp_path)
    pair_issame, sets = validation_sets(memfile.issame, memfile.dataname, memfile.dataname_to_idx)
    assert [(s.name, s.start, s.stop) for s in sets] == [("easy", 0, 20), ("hard", 20, 40)]
    dist = memfile_pair_distances(pixel_embedding, memfile.images, range(40), batch_pairs=7)
    # the same distances, computed directly from the normalised pixels
    pixels = torch.from_numpy(np.array(memfile.images))
    flat = torch.nn.functional.normalize(pixels.flatten(1), dim=1)
    mirrored = torch.nn.functional.normalize(pixels.flip(3).flatten(1), dim=1)
    fused = torch.nn.functional.normalize(flat + mirrored, dim=1)
    expected = ((fused[0::2] - fused[1::2]) ** 2).sum(1).numpy()
    np.testing.assert_allclose(dist, expected, rtol=1e-5, atol=1e-6)

    results = evaluate_sets(dist, pair_issame, sets, n_folds=10)
    assert results["easy"].accuracy == 1.0
    assert results["hard"].accuracy < 0.8
    figures = summary_figures(results, "raw_pixel")
    assert figures["raw_pixel_accuracy"] == pytest.approx((1.0 + results["hard"].accuracy) / 2)
    assert figures["raw_pixel_accuracy_easy"] == 1.0
    assert {"raw_pixel_accuracy_std", "raw_pixel_threshold_hard"} <= set(figures)


def test_uint8_memfile_gives_the_float_memfile_distances(tmp_path):
    as_float, as_uint8 = _memfile(tmp_path, "float32"), _memfile(tmp_path, "uint8")
    a = memfile_pair_distances(pixel_embedding, as_float.images, range(40))
    b = memfile_pair_distances(pixel_embedding, as_uint8.images, range(40))
    np.testing.assert_allclose(a, b, atol=1e-5)
    part = memfile_pair_distances(pixel_embedding, as_float.images, np.arange(10, 25))
    np.testing.assert_allclose(part, a[10:25], atol=1e-6)


def test_inconsistent_pair_rows_are_a_format_error():
    issame = np.array([True, True, False, True])
    with pytest.raises(FormatError, match="disagree"):
        validation_sets(issame, np.zeros(4, np.int64), {"lfw": 0})
    with pytest.raises(FormatError, match="not contiguous"):
        validation_sets(np.ones(6, bool), np.array([0, 0, 1, 1, 0, 0]), {"a": 0, "b": 1})
