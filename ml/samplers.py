"""Index samplers for training: P x K identity batches and class-balanced draws.

Both samplers are built from a label ARRAY (one label per dataset index, e.g. the catalog's
label column), never by iterating the dataset, so building one costs a sort of the labels and no
image is decoded. Both are DDP-aware in the way of torch's DistributedSampler: every rank yields
the same number of indices, and `set_epoch(e)` reshuffles deterministically (the order depends
only on seed, epoch, rank and the labels, identical on every run and machine).

Replica count and rank come from the `num_replicas` / `rank` arguments, or from torch.distributed
when it is initialised, or default to a single replica.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from ml.errors import ConfigError, DatasetError


def resolve_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(num_replicas, rank): the given values, else torch.distributed's when initialised, else (1, 0)."""
    if num_replicas is None or rank is None:
        import torch.distributed as dist

        initialised = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if initialised else 1
        if rank is None:
            rank = dist.get_rank() if initialised else 0
    if num_replicas < 1:
        raise ConfigError(f"sampler: num_replicas={num_replicas}; it must be at least 1")
    if not 0 <= rank < num_replicas:
        raise ConfigError(f"sampler: rank={rank} is outside [0, {num_replicas - 1}] "
                          f"for num_replicas={num_replicas}")
    return int(num_replicas), int(rank)


def label_array(labels: Sequence | np.ndarray, who: str) -> np.ndarray:
    """The labels as a non-empty 1-D numpy array (torch tensors and lists accepted)."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ConfigError(f"{who}: labels must be one label per sample (1-D), got shape {array.shape}")
    if array.size == 0:
        raise DatasetError(f"{who}: the label array is empty; the dataset has no samples to draw")
    return array


def check_seed(seed: int, who: str) -> int:
    if int(seed) < 0:
        raise ConfigError(f"{who}: seed={seed}; use a non-negative integer")
    return int(seed)


class RandomIdentitySampler(Sampler[int]):
    """P identities x K instances per batch, for metric-learning losses (seed 002's PK sampler).

    Yields dataset indices; every consecutive `batch_size` chunk holds exactly P = batch_size / K
    distinct identities with exactly K indices each, so a DataLoader with the same `batch_size`
    (and `shuffle=False`) gets PK batches. Per epoch every identity of this rank is used once
    (as seed 002): the identities are shuffled, split disjointly across ranks, and each rank's
    list is cut into batches of P.

    Instances: an identity with at least K images gives K distinct images chosen at random; one
    with fewer gives all of its images, then repeats them (sampling with replacement, but
    balanced: with 3 images and K=4, each image appears once and one of them twice).

    drop_last=True: each rank yields (identities per rank // P) full batches; the identities left
    over are different every epoch. drop_last=False: each rank pads its own identity list by
    wrapping around it (never borrowing another rank's identities), up to ceil(identities per rank
    / P) batches. Either way every rank yields the same number of batches, and every rank needs
    at least P identities.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        num_instances: int = 4,
        batch_size: int = 64,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = True,
    ):
        who = "RandomIdentitySampler"
        labels = label_array(labels, who)
        if num_instances < 1:
            raise ConfigError(f"{who}: num_instances={num_instances}; K must be at least 1")
        if batch_size < num_instances or batch_size % num_instances:
            raise ConfigError(f"{who}: batch_size={batch_size} is not a multiple of "
                              f"num_instances={num_instances}; use batch_size = P * K")
        self.num_instances = int(num_instances)
        self.batch_size = int(batch_size)
        self.num_identities_per_batch = self.batch_size // self.num_instances
        self.seed = check_seed(seed, who)
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        self.drop_last = bool(drop_last)
        self.epoch = 0

        self.identities, group_of_sample, self.counts = np.unique(
            labels, return_inverse=True, return_counts=True)
        self.samples_by_identity = np.argsort(group_of_sample, kind="stable")
        self.identity_of_sorted = group_of_sample[self.samples_by_identity]
        self.starts = np.concatenate(([0], np.cumsum(self.counts)[:-1]))

        fewest = len(self.identities) // self.num_replicas
        if fewest < self.num_identities_per_batch:
            raise ConfigError(
                f"{who}: {len(self.identities)} identities over {self.num_replicas} replica(s) "
                f"leave {fewest} per rank, fewer than P={self.num_identities_per_batch} "
                f"identities per batch; lower batch_size or raise num_instances")
        most = math.ceil(len(self.identities) / self.num_replicas)
        per_batch = self.num_identities_per_batch
        self.batches_per_epoch = fewest // per_batch if self.drop_last else math.ceil(most / per_batch)

    @property
    def num_identities(self) -> int:
        """Distinct labels in the label array."""
        return len(self.identities)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use `epoch`'s order (call it at the start of every epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def identity_slots(self, rng: np.random.Generator) -> np.ndarray:
        """This rank's identity (group number) for each of the epoch's P-slots, batch by batch."""
        mine = rng.permutation(self.num_identities)[self.rank::self.num_replicas]
        slots = self.batches_per_epoch * self.num_identities_per_batch
        # Wrapping a list of >= P distinct identities keeps every window of P distinct.
        return np.resize(mine, slots)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        slots = self.identity_slots(rng)
        # Shuffle samples within each identity (groups stay contiguous, order random inside).
        within = np.lexsort((rng.random(len(self.samples_by_identity)), self.identity_of_sorted))
        shuffled = self.samples_by_identity[within]
        # The t-th time an identity is used in this epoch it takes the next K of its shuffled
        # images, wrapping around (so fewer than K images repeat, evenly).
        occurrence = occurrence_numbers(slots)
        k = self.num_instances
        counts = self.counts[slots][:, None]
        offsets = (occurrence[:, None] * k + np.arange(k)[None, :]) % counts
        indices = shuffled[self.starts[slots][:, None] + offsets]
        return iter(indices.reshape(-1).tolist())


def occurrence_numbers(values: np.ndarray) -> np.ndarray:
    """For each position, how many times its value appeared before it (0 for the first time)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    run_start = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    run_lengths = np.diff(np.r_[run_start, len(values)])
    rank_in_run = np.arange(len(values)) - np.repeat(run_start, run_lengths)
    occurrence = np.empty(len(values), dtype=np.int64)
    occurrence[order] = rank_in_run
    return occurrence


def class_balance(counts: np.ndarray, power: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight of one sample of each class, expected share of each class in a draw) for class
    `counts`: weights 1 / count ** power (0 for an empty class), shares proportional to
    count x weight. power 1 gives every class the same share, 0 leaves the data as it is."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.zeros_like(counts)
    present = counts > 0
    weights[present] = counts[present] ** -power
    mass = counts * weights
    return weights, mass / mass.sum()


class ClassBalancedSampler(Sampler[int]):
    """Draws indices with probability proportional to 1 / (class count) ** power (seed 003).

    power=1 makes every class equally likely (rare classes oversampled), power=0 is plain
    uniform sampling, values in between soften the correction. `class_weights` (label -> weight
    of one sample of that class) and `expected_class_share` (label -> expected fraction of the
    draws) are plain Python dicts, ready for materialization metadata.

    num_samples is the epoch's total across all replicas (default: the dataset size); each rank
    yields ceil(num_samples / num_replicas) indices, taking every num_replicas-th index of one
    shared draw, so the ranks' draws never overlap by position. replacement=False draws distinct
    indices (weighted, Efraimidis-Spirakis keys) and needs num_samples <= dataset size; the draw
    is wrapped around when the ranks need a few more to have equal lengths.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        num_samples: int | None = None,
        replacement: bool = True,
        seed: int = 0,
        power: float = 1.0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        who = "ClassBalancedSampler"
        labels = label_array(labels, who)
        self.seed = check_seed(seed, who)
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        self.replacement = bool(replacement)
        self.power = float(power)
        self.epoch = 0
        self.num_samples = len(labels) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ConfigError(f"{who}: num_samples={num_samples}; it must be at least 1")
        if not self.replacement and self.num_samples > len(labels):
            raise ConfigError(f"{who}: num_samples={self.num_samples} distinct indices requested "
                              f"from {len(labels)} samples; use replacement=True or fewer samples")

        classes, class_of_sample, counts = np.unique(labels, return_inverse=True, return_counts=True)
        weight_of_class, share = class_balance(counts, self.power)
        self.class_weights = dict(zip(classes.tolist(), weight_of_class.tolist()))
        self.expected_class_share = dict(zip(classes.tolist(), share.tolist()))
        self.sample_weights = weight_of_class[class_of_sample]
        self.samples_per_replica = math.ceil(self.num_samples / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use `epoch`'s draw (call it at the start of every epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_replica

    def draw(self) -> np.ndarray:
        """The epoch's shared draw over all replicas (samples_per_replica * num_replicas indices)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        total = self.samples_per_replica * self.num_replicas
        weights = self.sample_weights
        if self.replacement:
            return rng.choice(len(weights), size=total, p=weights / weights.sum())
        keys = rng.exponential(size=len(weights)) / weights
        chosen = np.argpartition(keys, self.num_samples - 1)[:self.num_samples]
        chosen = chosen[np.argsort(keys[chosen], kind="stable")]
        return np.resize(chosen, total)

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw()[self.rank::self.num_replicas].tolist())
