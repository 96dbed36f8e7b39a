"""The discriminative centroid loss under DistributedDataParallel: equal to one process.

With DDP each of W ranks holds a local batch of b = B/W samples and gradients are averaged
over the ranks. Terms that are means over the local batch then give the global-batch
gradient, but two parts of :class:`oltr.nn.DiscCentroidsLoss` are not such means:

* the official centroid gradient divides by ``1 + n_k``, the count of class k in the batch
  (docs/official-differences.md D3): here ``n_k`` is the **global** batch's histogram (all-reduced);
* the repel term clamps ``margin - mean_{i,k} S[i,k]`` (mean over B·K): here the mean is
  the global one (all-reduced), so the clamp switches on all ranks at once; its gradient is
  scaled so that averaging over the ranks gives the single-process gradient.

The centroids are not a DDP parameter (they live in the criterion, with their own
optimiser), so a gradient hook averages their gradient over the ranks in every backward;
every rank's memory and optimiser state therefore stay identical. In one process the class
is :class:`oltr.nn.DiscCentroidsLoss` exactly.
"""
from __future__ import annotations

import torch
from torch import Tensor

from oltr.nn import DiscCentroidsLoss
from oltr.train.distributed import all_reduce_sum, is_distributed, world_size

__all__ = ["DistributedDiscCentroidsLoss"]


class DistributedDiscCentroidsLoss(DiscCentroidsLoss):
    """:class:`oltr.nn.DiscCentroidsLoss` whose batch statistics and centroid gradient span
    every rank (same arguments, same ``forward(feat (b, D), labels (b,)) -> 0-dim loss``).

    Every rank must call ``forward`` and ``backward`` the same number of times (collectives).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.centroids.register_hook(self._average_over_ranks)

    @staticmethod
    def _average_over_ranks(grad: Tensor) -> Tensor:
        if not is_distributed():
            return grad
        return all_reduce_sum(grad.clone()).div_(float(world_size()))

    def _class_histogram(self, labels: Tensor, dtype: torch.dtype) -> Tensor:
        return all_reduce_sum(super()._class_histogram(labels, dtype))

    def _masked_mean(self, masked_sum: Tensor, batch: int) -> Tensor:
        local = super()._masked_mean(masked_sum, batch)
        if not is_distributed():
            return local
        totals = torch.stack([masked_sum.detach().to(torch.float64),
                              torch.tensor(float(batch), dtype=torch.float64, device=masked_sum.device)])
        all_reduce_sum(totals)
        global_mean = (totals[0] / (totals[1] * self.num_classes)).to(local.dtype)
        # value: the global mean; gradient: 1/(b*K) per local entry, i.e. 1/(B*K) after DDP's average
        return local + (global_mean - local.detach())
