from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.errors import ConfigError
from ml.pairs import VerificationPairs, make_verification_pairs


def check_pairs(result: VerificationPairs, labels: np.ndarray, n_pairs: int, n_folds: int) -> None:
    """Every property a verification protocol relies on."""
    pairs, issame = result.pairs, result.issame
    assert pairs.shape == (n_pairs, 2) and issame.shape == (n_pairs,)
    assert np.all(pairs[:, 0] < pairs[:, 1]) and pairs.min(initial=0) >= 0
    assert pairs.max(initial=0) < max(len(labels), 1)
    assert len({tuple(p) for p in pairs.tolist()}) == n_pairs                  # no repeats
    assert np.array_equal(labels[pairs[:, 0]] == labels[pairs[:, 1]], issame)   # flags are true
    fold_size = n_pairs // n_folds
    assert result.fold.tolist() == [f for f in range(n_folds) for _ in range(fold_size)]
    for f in range(n_folds):                                        # contiguous and balanced
        block = issame[f * fold_size:(f + 1) * fold_size]
        assert block.sum() == fold_size // 2


def test_balanced_contiguous_folds_like_insightface():
    labels = np.repeat(np.arange(50), 6)
    result = make_verification_pairs(labels, n_pairs=600, seed=0)
    check_pairs(result, labels, 600, 10)
    assert result.issame[:4].tolist() == [True, False, True, False]    # every prefix balanced


def test_same_seed_same_pairs_other_seed_other_pairs():
    labels = np.repeat(np.arange(30), 4)
    a = make_verification_pairs(labels, 200, seed=7)
    b = make_verification_pairs(labels, 200, seed=7)
    c = make_verification_pairs(labels, 200, seed=8)
    assert np.array_equal(a.pairs, b.pairs) and not np.array_equal(a.pairs, c.pairs)


def test_identities_with_one_image_give_no_same_pairs():
    labels = np.array(["solo_a", "pair", "solo_b", "pair", "trio", "trio", "trio", "solo_c"])
    result = make_verification_pairs(labels, n_pairs=8, seed=1, n_folds=2)
    check_pairs(result, labels, 8, 2)
    same_members = set(result.pairs[result.issame].ravel().tolist())
    assert same_members <= {1, 3, 4, 5, 6}
    # 4 same pairs from 1 + 3 possible: every one of them is used
    assert {tuple(p) for p in result.pairs[result.issame].tolist()} == \
        {(1, 3), (4, 5), (4, 6), (5, 6)}


def test_impossible_requests_are_config_errors():
    with pytest.raises(ConfigError, match="only 1 distinct"):
        make_verification_pairs(["a", "a", "b"], n_pairs=4, seed=0, n_folds=1)
    with pytest.raises(ConfigError, match="multiple of 20"):
        make_verification_pairs(np.repeat(np.arange(10), 3), n_pairs=30, seed=0)
    with pytest.raises(ConfigError, match="different-identity pairs"):
        make_verification_pairs(["a"] * 5, n_pairs=2, seed=0, n_folds=1)


def test_different_pairs_are_spread_over_all_identity_pairs():
    # one identity of 200 samples and 40 singletons: uniform over different-identity pairs means
    # singleton-singleton pairs appear at their share, not at 1/2 (uniform over identities)
    labels = np.concatenate([np.zeros(200, int), np.arange(1, 41)])
    result = make_verification_pairs(labels, n_pairs=400, seed=3)
    diff = result.pairs[~result.issame]
    small_small = np.sum((labels[diff[:, 0]] > 0) & (labels[diff[:, 1]] > 0))
    # 780 small-small of 8780 different pairs: ~8.9% expected, 200 draws
    assert 5 <= small_small <= 35


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=12), folds=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1), fraction=st.floats(0, 1))
def test_any_feasible_request_meets_the_protocol(sizes, folds, seed, fraction):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    same_possible = sum(k * (k - 1) // 2 for k in sizes)
    diff_possible = (len(labels) ** 2 - sum(k * k for k in sizes)) // 2
    per_fold_half = int(min(same_possible, diff_possible) * fraction) // folds
    n_pairs = 2 * folds * per_fold_half
    check_pairs(make_verification_pairs(labels, n_pairs, seed, folds), labels, n_pairs, folds)
