"""Class means of features: the one helper behind every class-mean computation.

:func:`oltr.compute_centroids` (the memory initialisation, streaming over a loader),
:func:`oltr.scores.class_means` (arrays at hand) and the distributed
:func:`oltr.train.memory_init.global_class_means` (sums all-reduced over ranks) all
as do :class:`oltr.scores.Mahalanobis` and :class:`oltr.longtail.NCM`, accumulate per-class
float64 sums and counts with :class:`ClassMeanAccumulator` and divide with
:meth:`ClassMeanAccumulator.means`.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = ["FALLBACKS", "ClassMeanAccumulator"]

#: ``fallback`` values of :meth:`ClassMeanAccumulator.means`: ``None`` (a class with no
#: sample raises ValueError), ``"zeros"`` (its mean is the zero vector), ``"global_mean"``
#: (its mean is the mean of all features).
FALLBACKS = (None, "zeros", "global_mean")


class ClassMeanAccumulator:
    """Running per-class sums (float64 ``(K, D)``) and counts (int64 ``(K,)``).

    Args:
        num_classes: K >= 1.
        device: where the sums live (the features' device).
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        num_classes = int(num_classes)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.sums: Optional[Tensor] = None
        self.counts = torch.zeros(num_classes, dtype=torch.int64, device=self.device)

    def add(self, features: Tensor, labels: Tensor) -> None:
        """Add features float ``(B, D)`` of labels int ``(B,)`` in ``[0, K)``."""
        labels = torch.as_tensor(labels).to(device=self.device, dtype=torch.int64).reshape(-1)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {bad}")
        if features.dim() != 2 or features.shape[0] != labels.shape[0]:
            raise ValueError(f"features must have shape ({labels.shape[0]}, D) to match the labels, "
                             f"got {tuple(features.shape)}")
        if self.sums is None:
            self.sums = torch.zeros(self.num_classes, features.shape[1], dtype=torch.float64, device=self.device)
        elif features.shape[1] != self.sums.shape[1]:
            raise ValueError(f"features have {features.shape[1]} columns, earlier ones {self.sums.shape[1]}")
        self.sums.index_add_(0, labels, features.detach().to(self.device, torch.float64))
        self.counts += torch.bincount(labels, minlength=self.num_classes)

    def reduce(self, all_reduce_sum: Callable[[Tensor], object]) -> None:
        """Sum the sums and counts over processes in place (``all_reduce_sum(tensor)``)."""
        if self.sums is None:
            raise ValueError("no features were added")
        all_reduce_sum(self.sums)
        all_reduce_sum(self.counts)

    def missing(self) -> list[int]:
        """Classes without a sample."""
        return (self.counts == 0).nonzero().flatten().tolist()

    @classmethod
    def of(cls, features: Tensor, labels: Tensor, num_classes: int) -> ClassMeanAccumulator:
        """An accumulator holding ``features (N, D)`` by ``labels (N,)`` (numpy or torch)."""
        acc = cls(num_classes, features.device if isinstance(features, Tensor) else "cpu")
        acc.add(torch.as_tensor(features), torch.as_tensor(labels))
        return acc

    def means(self, fallback: Optional[str] = None, where: str = "", dtype: torch.dtype = torch.float32,
              sample: str = "sample") -> Tensor:
        """Class means ``(K, D)`` of ``dtype``; ``fallback`` fills classes without a sample.

        Raises:
            ValueError: no feature was added, or a class has no sample and ``fallback`` is None
                (the message names the classes, says "no <sample>" and ``where`` they were
                looked for).
        """
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        if self.sums is None:
            raise ValueError(f"no features{where}: no batch was seen")
        missing = self.missing()
        means = self.sums / self.counts.clamp_min(1).unsqueeze(1).to(torch.float64)
        if missing:
            if fallback is None:
                shown = missing[:20]
                more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
                raise ValueError(f"class(es) {shown}{more} have no {sample}{where}; pass fallback='zeros' or "
                                 "fallback='global_mean' to fill them")
            if fallback == "global_mean":
                means[missing] = self.sums.sum(0) / self.counts.sum().to(torch.float64)
            else:
                means[missing] = 0.0
        return means.to(dtype)
