"""Memory initialisation across processes: exact global class means."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from oltr.model import compute_centroids
from oltr.train.distributed import all_reduce_sum, is_distributed

__all__ = ["global_class_means"]


def global_class_means(model: nn.Module, loader: Iterable, num_classes: int) -> torch.Tensor:
    """Class means (K, D) float32 of the direct features over ``loader``.

    Single process: :func:`oltr.compute_centroids` (which raises if a class has no sample,
    as the official code assumes every class is present). Under ``torch.distributed`` each
    rank averages its shard; per-class sums and counts are all-reduced, so every rank gets
    the global means.
    """
    if not is_distributed():
        return compute_centroids(model, loader, num_classes)
    means, counts = compute_centroids(model, loader, num_classes, fallback="zeros", return_counts=True)
    sums = means.to(torch.float64) * counts.unsqueeze(1).to(torch.float64)
    all_reduce_sum(sums)
    all_reduce_sum(counts)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"class(es) {missing[:20]} have no training sample on any rank")
    return (sums / counts.unsqueeze(1).to(torch.float64)).to(torch.float32)
