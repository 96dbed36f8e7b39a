"""Training losses for long-tailed data: logit-adjusted cross-entropy and Balanced Softmax.

* Logit-adjusted loss (Menon et al., ICLR 2021): ``CE(logits + tau * log(prior), y)``.
* Balanced Softmax (Ren et al., "Balanced Meta-Softmax", NeurIPS 2020): the same with
  ``tau = 1`` — the softmax of ``logits + log(prior)`` models the long-tailed training
  distribution, so the plain softmax of ``logits`` is the balanced one at test time.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oltr.longtail.adjust import log_prior

__all__ = ["BalancedSoftmaxLoss", "LogitAdjustedLoss"]


class LogitAdjustedLoss(nn.Module):
    """``CE(logits + tau * log(prior), target)``; ``forward(logits (B, K) float, target (B,)
    int64) -> scalar``. At test time use the raw logits (no adjustment).

    Args:
        train_counts: ``(K,)`` training images per class (all > 0).
        tau: strength; 1.0 is the paper's default.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` as :func:`torch.nn.functional.cross_entropy`.
    """

    def __init__(self, train_counts: Any, tau: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        tau = float(tau)
        if not torch.isfinite(torch.tensor(tau)):
            raise ValueError(f"tau must be finite; got {tau}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")
        self.tau, self.reduction = tau, reduction
        self.log_prior: torch.Tensor
        self.register_buffer("log_prior", torch.as_tensor(log_prior(train_counts), dtype=torch.float32))

    @property
    def num_classes(self) -> int:
        return int(self.log_prior.numel())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be (B, {self.num_classes}); got {tuple(logits.shape)}")
        shift = self.log_prior.to(dtype=logits.dtype, device=logits.device)
        return F.cross_entropy(logits + self.tau * shift, target, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau}"


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced Softmax: :class:`LogitAdjustedLoss` with ``tau = 1``."""

    def __init__(self, train_counts: Any, reduction: str = "mean") -> None:
        super().__init__(train_counts, tau=1.0, reduction=reduction)
