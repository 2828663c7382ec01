"""Face verification accuracy with the insightface / AdaFace 10-fold protocol.

The protocol (insightface `verification.py` / AdaFace `evaluate_utils.py`), kept exactly:

1. every image is embedded twice, as it is and mirrored left-right; the two raw (un-normalised)
   embeddings are summed and the sum L2-normalised (`fuse_with_flip`), as insightface's `test()`
   and AdaFace's `fuse_features_with_norm` do: the view with the larger norm weighs more;
2. a pair's distance is the SQUARED L2 distance between its two fused embeddings (0..4);
3. the pairs are cut into `n_folds` (10) CONTIGUOUS folds, as sklearn's KFold without shuffling
   (the first n % 10 folds get one pair more): no shuffling, because verification sets are laid
   out so that each block of pairs is balanced and holds disjoint people;
4. for each fold the threshold in np.arange(0, 4, 0.01) with the best accuracy on the other nine
   folds (the first such threshold) classifies the fold's pairs as same (distance < threshold)
   or different; accuracy = (true accepts + true rejects) / pairs;
5. the result is the mean and the (population) standard deviation of the ten fold accuracies.

A validation memfile (ml/formats/insightface_bin.py) concatenates several sets, each marked by a
dataname code per image; every set is scored on its own pairs (`evaluate_sets`). The same
protocol on flattened pixels (`pixel_embedding`) is the raw-pixel baseline a trained model must
beat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ml.collate import FACE_NORMALIZER
from ml.errors import DatasetError, FormatError

THRESHOLDS = np.arange(0, 4, 0.01)
N_FOLDS = 10

Embed = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class VerificationResult:
    """The 10-fold verification figures of one set of pairs."""

    accuracy: float                  # mean of the fold accuracies
    accuracy_std: float              # population std of the fold accuracies (np.std)
    fold_accuracies: np.ndarray      # (n_folds,)
    best_thresholds: np.ndarray      # (n_folds,) threshold chosen on the other folds
    tpr: np.ndarray                  # (thresholds,) true-accept rate, mean over the test folds
    fpr: np.ndarray                  # (thresholds,) false-accept rate, mean over the test folds
    n_pairs: int

    @property
    def threshold(self) -> float:
        """The mean of the per-fold best thresholds (insightface reports it as `XNorm` beside)."""
        return float(np.mean(self.best_thresholds))


def contiguous_folds(n: int, n_folds: int = N_FOLDS) -> list[np.ndarray]:
    """Test indices of each fold, as sklearn KFold(n_splits=n_folds, shuffle=False).split."""
    if n_folds < 2 or n < n_folds:
        raise DatasetError(f"{n} verification pairs cannot be cut into {n_folds} folds; a "
                           f"validation set needs at least {max(n_folds, 2)} pairs")
    sizes = np.full(n_folds, n // n_folds, dtype=np.int64)
    sizes[: n % n_folds] += 1
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    return [np.arange(bounds[f], bounds[f + 1]) for f in range(n_folds)]


def _confusion(thresholds: np.ndarray, dist: np.ndarray, issame: np.ndarray):
    """tp, fp, tn, fn per threshold (rows) for the pairs given."""
    predicted = dist[None, :] < thresholds[:, None]
    actual = issame[None, :]
    tp = np.sum(predicted & actual, axis=1)
    fp = np.sum(predicted & ~actual, axis=1)
    tn = np.sum(~predicted & ~actual, axis=1)
    fn = np.sum(~predicted & actual, axis=1)
    return tp, fp, tn, fn


def accuracy_at(thresholds: np.ndarray, dist: np.ndarray, issame: np.ndarray) -> np.ndarray:
    """(tp + tn) / pairs for each threshold: insightface's calculate_accuracy, vectorised."""
    tp, _, tn, _ = _confusion(np.atleast_1d(thresholds), dist, issame)
    return (tp + tn) / dist.size


def evaluate_distances(dist: np.ndarray, issame: np.ndarray, n_folds: int = N_FOLDS,
                       thresholds: np.ndarray = THRESHOLDS) -> VerificationResult:
    """The k-fold protocol on precomputed squared distances, one per pair (insightface's
    calculate_roc with its calculate_accuracy)."""
    dist = np.asarray(dist, dtype=np.float64).reshape(-1)
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    if dist.shape != issame.shape:
        raise ValueError(f"{dist.size} distances for {issame.size} issame flags")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    accuracies, best = np.zeros(n_folds), np.zeros(n_folds)
    tprs, fprs = np.zeros((n_folds, thresholds.size)), np.zeros((n_folds, thresholds.size))
    everything = np.arange(dist.size)
    for f, test in enumerate(contiguous_folds(dist.size, n_folds)):
        train = np.setdiff1d(everything, test, assume_unique=True)
        best_index = int(np.argmax(accuracy_at(thresholds, dist[train], issame[train])))
        tp, fp, tn, fn = _confusion(thresholds, dist[test], issame[test])
        tprs[f] = np.where(tp + fn == 0, 0.0, tp / np.maximum(tp + fn, 1))
        fprs[f] = np.where(fp + tn == 0, 0.0, fp / np.maximum(fp + tn, 1))
        best[f] = thresholds[best_index]
        accuracies[f] = accuracy_at(thresholds[best_index], dist[test], issame[test])[0]
    return VerificationResult(accuracy=float(np.mean(accuracies)),
                              accuracy_std=float(np.std(accuracies)), fold_accuracies=accuracies,
                              best_thresholds=best, tpr=tprs.mean(0), fpr=fprs.mean(0),
                              n_pairs=int(dist.size))


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), p=2.0, dim=1)


def fuse_with_flip(embed: Embed, images: torch.Tensor) -> torch.Tensor:
    """normalize(embed(x) + embed(mirrored x)), one row per image: the raw embeddings are added
    (insightface / AdaFace), not normalised first, so the views are weighted by their norms."""
    plain = embed(images).float()
    mirrored = embed(torch.flip(images, dims=[3])).float()
    return l2_normalize(plain + mirrored)


def pair_squared_distances(embeddings: torch.Tensor | np.ndarray) -> np.ndarray:
    """||e[2k] - e[2k+1]||^2 for consecutive rows (pairs are rows 2k, 2k+1)."""
    e = torch.as_tensor(embeddings).float()
    return ((e[0::2] - e[1::2]) ** 2).sum(dim=1).cpu().numpy().astype(np.float64)


def evaluate_embeddings(embeddings: torch.Tensor | np.ndarray, issame: Sequence[bool] | np.ndarray,
                        n_folds: int = N_FOLDS) -> VerificationResult:
    """insightface's `evaluate(embeddings, actual_issame)`: rows 2k and 2k+1 form pair k; the
    rows are L2-normalised first; `issame` has one flag per pair."""
    e = l2_normalize(torch.as_tensor(np.asarray(embeddings)))
    return evaluate_distances(pair_squared_distances(e), np.asarray(issame, bool), n_folds)


def pixel_embedding(images: torch.Tensor) -> torch.Tensor:
    """The raw-pixel baseline's 'embedding': the normalised image flattened to one vector."""
    return images.flatten(1).float()


def memfile_batch(images: np.ndarray, start: int, stop: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Rows [start, stop) of a validation memfile on `device` as float32 normalised like
    training ((x / 255 - 0.5) / 0.5): uint8 memfiles travel as uint8 and are normalised there
    by the trainer's FACE_NORMALIZER; float32 ones are already normalised."""
    block = torch.from_numpy(np.array(images[start:stop])).to(device, non_blocking=True)
    return FACE_NORMALIZER.images(block) if block.dtype == torch.uint8 else block.float()


def memfile_pair_distances(embed: Embed, images: np.ndarray, pairs: Sequence[int] | range,
                           device: torch.device | str = "cpu", batch_pairs: int = 64,
                           prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
                           ) -> np.ndarray:
    """Squared distances of the fused embeddings of memfile pairs `pairs` (a contiguous range of
    pair numbers; pair k is image rows 2k, 2k+1), computed batch by batch under no_grad.

    `prepare` (e.g. channels_last) is applied to each batch once it is on `device`.
    """
    pairs = range(0) if len(pairs) == 0 else range(int(pairs[0]), int(pairs[-1]) + 1)
    out = []
    with torch.no_grad():
        for first in range(pairs.start, pairs.stop, batch_pairs):
            last = min(first + batch_pairs, pairs.stop)
            batch = memfile_batch(images, 2 * first, 2 * last, device)
            if prepare is not None:
                batch = prepare(batch)
            out.append(pair_squared_distances(fuse_with_flip(embed, batch)))
    return np.concatenate(out) if out else np.zeros(0, np.float64)


@dataclass(frozen=True)
class SetPairs:
    """The pair rows [start, stop) of one named set inside a validation memfile."""

    name: str
    code: int
    start: int
    stop: int


def validation_sets(issame: np.ndarray, dataname: np.ndarray, dataname_to_idx: dict[str, int],
                    where: str = "validation memfile") -> tuple[np.ndarray, list[SetPairs]]:
    """Per-pair issame flags and the pair range of each set, from per-image arrays.

    Both images of a pair must carry the same flag and set code, and each set's pairs must be
    contiguous (as build_validation_memfile writes them).
    """
    issame, dataname = np.asarray(issame, bool), np.asarray(dataname, np.int64)
    if issame.size % 2 or issame.size != dataname.size:
        raise FormatError(where, None, f"{issame.size} issame flags for {dataname.size} images; "
                          "expected one of each per image, two images per pair")
    if np.any(issame[0::2] != issame[1::2]) or np.any(dataname[0::2] != dataname[1::2]):
        raise FormatError(where, None, "the two images of a pair disagree on issame or set; "
                          "rebuild the validation memfile")
    pair_codes = dataname[0::2]
    names = {code: name for name, code in dataname_to_idx.items()}
    sets = []
    for code in dict.fromkeys(pair_codes.tolist()):
        rows = np.flatnonzero(pair_codes == code)
        if rows[-1] - rows[0] + 1 != rows.size:
            raise FormatError(where, None, f"the pairs of set code {code} are not contiguous")
        sets.append(SetPairs(names.get(code, f"set{code}"), int(code), int(rows[0]),
                             int(rows[-1]) + 1))
    return issame[0::2], sets


def evaluate_sets(dist: np.ndarray, pair_issame: np.ndarray, sets: Sequence[SetPairs],
                  n_folds: int = N_FOLDS) -> dict[str, VerificationResult]:
    """The protocol on each set's own pairs: {set name: result}."""
    return {s.name: evaluate_distances(dist[s.start:s.stop], pair_issame[s.start:s.stop], n_folds)
            for s in sets}


def summary_figures(results: dict[str, VerificationResult], prefix: str = "val") -> dict[str, float]:
    """Flat figures: `<prefix>_accuracy` (mean over sets), `<prefix>_accuracy_std` (mean of the
    sets' fold stds), and per set `<prefix>_accuracy_<set>`, `<prefix>_accuracy_std_<set>`,
    `<prefix>_threshold_<set>`."""
    if not results:
        return {}
    out = {f"{prefix}_accuracy": float(np.mean([r.accuracy for r in results.values()])),
           f"{prefix}_accuracy_std": float(np.mean([r.accuracy_std for r in results.values()]))}
    for name, r in results.items():
        out[f"{prefix}_accuracy_{name}"] = r.accuracy
        out[f"{prefix}_accuracy_std_{name}"] = r.accuracy_std
        out[f"{prefix}_threshold_{name}"] = r.threshold
    return out
