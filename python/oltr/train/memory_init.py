"""Memory initialisation across processes: exact global class means."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from oltr.model import compute_centroids
from oltr.model.centroids import accumulate_class_means
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
    acc = accumulate_class_means(model, loader, num_classes)
    acc.reduce(all_reduce_sum)
    return acc.means(where=" on any rank")
