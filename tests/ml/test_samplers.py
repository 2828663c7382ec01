from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ml.errors import ConfigError, DatasetError
from ml.samplers import ClassBalancedSampler, RandomIdentitySampler, occurrence_numbers


def identity_labels(counts: list[int], seed: int = 0) -> np.ndarray:
    """A shuffled label array with counts[i] samples of identity 100 + i."""
    labels = np.repeat(np.arange(100, 100 + len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


def batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def assert_pk(labels: np.ndarray, indices: list[int], p: int, k: int) -> None:
    assert len(indices) % (p * k) == 0
    for batch in batches(indices, p * k):
        per_identity = Counter(labels[batch].tolist())
        assert len(per_identity) == p, per_identity
        assert set(per_identity.values()) == {k}, per_identity


def test_every_batch_is_p_identities_times_k_instances():
    labels = identity_labels([5, 7, 4, 9, 12, 6, 8, 5, 4, 10, 6, 7])
    sampler = RandomIdentitySampler(labels, num_instances=4, batch_size=16)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 3 * 16            # 12 identities // P=4 -> 3 batches
    assert_pk(labels, indices, p=4, k=4)
    # each identity is used once per epoch, with K distinct images when it has K or more
    assert len(set(labels[indices].tolist())) == 12
    for batch in batches(indices, 4):
        assert len(set(batch)) == 4


def test_identities_with_fewer_than_k_images_repeat_evenly():
    labels = identity_labels([1, 2, 3, 3, 2, 1, 3, 2])
    sampler = RandomIdentitySampler(labels, num_instances=4, batch_size=8)
    indices = list(sampler)
    assert_pk(labels, indices, p=2, k=4)
    for group in batches(indices, 4):
        own = set(np.flatnonzero(labels == labels[group[0]]).tolist())
        assert set(group) == own                              # every image of it is used
        counts = Counter(group).values()
        assert max(counts) - min(counts) <= 1                 # and repeats are balanced


def test_drop_last_false_pads_by_wrapping_and_keeps_batches_distinct():
    labels = identity_labels([4] * 10)
    sampler = RandomIdentitySampler(labels, num_instances=2, batch_size=8, drop_last=False)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 3 * 8              # ceil(10 / 4) batches
    assert_pk(labels, indices, p=4, k=2)
    used = Counter(labels[indices].tolist())
    assert set(used) == set(range(100, 110))
    # an identity used twice in the epoch gets different images the second time
    twice = [label for label, n in used.items() if n == 4]
    for label in twice:
        picked = [i for i in indices if labels[i] == label]
        assert sorted(picked) == sorted(np.flatnonzero(labels == label).tolist())


def test_ddp_ranks_get_disjoint_identities_and_equal_lengths():
    labels = identity_labels([3, 5, 6, 4, 8, 2, 7, 5, 6, 3, 4, 9, 5, 6, 7, 4, 3])  # 17 identities
    for drop_last in (True, False):
        per_rank = [RandomIdentitySampler(labels, num_instances=2, batch_size=6, seed=7,
                                          num_replicas=3, rank=r, drop_last=drop_last)
                    for r in range(3)]
        lists = [list(s) for s in per_rank]
        assert len({len(x) for x in lists}) == 1
        assert all(len(x) == len(s) for x, s in zip(lists, per_rank))
        identity_sets = [set(labels[x].tolist()) for x in lists]
        for a in range(3):
            for b in range(a + 1, 3):
                assert not identity_sets[a] & identity_sets[b]
        for x in lists:
            assert_pk(labels, x, p=3, k=2)


def test_set_epoch_reshuffles_deterministically():
    labels = identity_labels([6] * 20)

    def order(epoch: int) -> list[int]:
        sampler = RandomIdentitySampler(labels, num_instances=3, batch_size=12, seed=5,
                                        num_replicas=2, rank=1)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0) == order(0)
    assert order(1) == order(1)
    assert order(0) != order(1)
    # a different seed gives a different order
    other = RandomIdentitySampler(labels, num_instances=3, batch_size=12, seed=6, num_replicas=2, rank=1)
    assert list(other) != order(0)


def test_dataloader_batches_follow_the_sampler():
    labels = identity_labels([5] * 8)
    dataset = TensorDataset(torch.arange(len(labels)), torch.as_tensor(labels))
    sampler = RandomIdentitySampler(labels, num_instances=2, batch_size=8)
    for _, batch_labels in DataLoader(dataset, batch_size=8, sampler=sampler):
        assert sorted(Counter(batch_labels.tolist()).values()) == [2, 2, 2, 2]


def test_builds_from_labels_without_touching_a_dataset():
    labels = identity_labels([50] * 2000)                      # 100k samples
    sampler = RandomIdentitySampler(labels, num_instances=4, batch_size=256)
    assert sampler.num_identities == 2000
    assert len(list(sampler)) == len(sampler) == (2000 // 64) * 256


def test_rejects_impossible_configurations():
    labels = identity_labels([4] * 5)
    with pytest.raises(ConfigError, match="multiple of"):
        RandomIdentitySampler(labels, num_instances=4, batch_size=10)
    with pytest.raises(ConfigError, match="per rank"):
        RandomIdentitySampler(labels, num_instances=2, batch_size=8, num_replicas=2, rank=0)
    with pytest.raises(ConfigError, match="rank=2"):
        RandomIdentitySampler(labels, num_instances=1, batch_size=1, num_replicas=2, rank=2)
    with pytest.raises(DatasetError, match="empty"):
        RandomIdentitySampler([], num_instances=1, batch_size=1)


def test_occurrence_numbers_count_earlier_repeats():
    assert occurrence_numbers(np.array([3, 1, 3, 3, 1, 2])).tolist() == [0, 0, 1, 2, 1, 0]


def imbalanced_labels() -> np.ndarray:
    return identity_labels([2000, 300, 40, 8], seed=3)


def test_class_balanced_draws_are_near_uniform_over_classes():
    labels = imbalanced_labels()
    sampler = ClassBalancedSampler(labels, num_samples=20000, seed=1)
    drawn = Counter(labels[list(sampler)].tolist())
    assert sum(drawn.values()) == len(sampler) == 20000
    for label in (100, 101, 102, 103):
        assert drawn[label] / 20000 == pytest.approx(0.25, abs=0.02)
    assert sampler.expected_class_share == pytest.approx({100: 0.25, 101: 0.25, 102: 0.25, 103: 0.25})
    assert sampler.class_weights[103] == pytest.approx(1 / 8)
    assert all(type(k) is int for k in sampler.class_weights)


def test_class_balanced_power_softens_the_correction():
    labels = imbalanced_labels()
    uniform = ClassBalancedSampler(labels, power=0.0)
    assert uniform.expected_class_share[100] == pytest.approx(2000 / 2348)
    half = ClassBalancedSampler(labels, power=0.5)
    assert 0.25 < half.expected_class_share[100] < 2000 / 2348


def test_class_balanced_ddp_split_and_epochs():
    labels = imbalanced_labels()
    ranks = [ClassBalancedSampler(labels, num_samples=1001, num_replicas=4, rank=r, seed=2)
             for r in range(4)]
    draws = [list(s) for s in ranks]
    assert {len(d) for d in draws} == {251} and all(len(s) == 251 for s in ranks)
    whole = ranks[0].draw()
    assert sorted(sum(draws, [])) == sorted(whole.tolist())
    first = list(ranks[0])
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != first
    ranks[0].set_epoch(0)
    assert list(ranks[0]) == first


def test_class_balanced_without_replacement_draws_distinct_indices():
    labels = imbalanced_labels()
    sampler = ClassBalancedSampler(labels, num_samples=200, replacement=False, seed=4)
    drawn = list(sampler)
    assert len(set(drawn)) == 200
    shares = Counter(labels[drawn].tolist())
    assert shares[103] == 8                                  # rare class: every sample it has
    with pytest.raises(ConfigError, match="replacement"):
        ClassBalancedSampler(labels, num_samples=len(labels) + 1, replacement=False)
