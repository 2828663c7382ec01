"""Weighted k-nearest-neighbour classification of embeddings (the standard probe of
self-supervised features: InstDisc / solo-learn's kNN).

Features are L2-normalised; each query takes its `k` most cosine-similar bank entries, which vote
for their labels with weight exp(similarity / temperature); the class with the largest total wins.
A feature extractor that learned something about the classes scores above one that did not
(e.g. the same architecture at random initialisation), without training any classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ml.errors import DatasetError


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor,
                k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                chunk: int = 1024) -> torch.Tensor:
    """The predicted label of each query row (long tensor), voting over the bank rows."""
    if bank.shape[0] == 0 or queries.shape[0] == 0:
        raise DatasetError(f"kNN: the bank ({bank.shape[0]} rows) and the queries "
                           f"({queries.shape[0]} rows) must both be non-empty")
    if bank.shape[0] != bank_labels.shape[0]:
        raise ValueError(f"kNN: {bank.shape[0]} bank rows but {bank_labels.shape[0]} labels")
    bank = F.normalize(bank.float(), dim=1)
    bank_labels = bank_labels.long().to(bank.device)
    classes = int(num_classes or int(bank_labels.max()) + 1)
    k = max(1, min(int(k), bank.shape[0]))
    out = []
    for start in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[start:start + chunk].float().to(bank.device), dim=1)
        similarity, nearest = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], classes, device=bank.device)
        votes.scatter_add_(1, bank_labels[nearest], (similarity / temperature).exp())
        out.append(votes.argmax(dim=1))
    return torch.cat(out)


def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor,
                 query_labels: torch.Tensor, k: int = 20, temperature: float = 0.07) -> float:
    """Fraction of queries whose kNN prediction (see knn_predict) is their label."""
    classes = int(max(int(bank_labels.max()), int(query_labels.max())) + 1)
    predicted = knn_predict(bank, bank_labels, queries, k, temperature, classes)
    return float((predicted.cpu() == query_labels.long().cpu()).float().mean())
