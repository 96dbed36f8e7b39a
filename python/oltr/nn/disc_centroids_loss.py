"""Discriminative centroid loss (official ``DiscCentroidsLoss``; docs/official-differences.md D3, D4)."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["CentroidLossTerms", "DiscCentroidsLoss", "GRADIENT_MODES"]

#: ``gradient`` values accepted by :class:`DiscCentroidsLoss`.
GRADIENT_MODES = ("official", "autograd")

_REPEL_CAP = 1e6


class CentroidLossTerms(NamedTuple):
    """The parts of :class:`DiscCentroidsLoss`, all 0-dim and unweighted."""

    attract: Tensor
    repel: Tensor
    mean_masked_sqdist: Tensor


class _OfficialAttract(torch.autograd.Function):
    """Attract term with the official custom backward (``DiscCentroidsLossFunc``).

    forward: ``sum ||f_i - c_{y_i}||^2 / 2 / B``.
    backward: feat grad ``grad_output * (f_i - c_{y_i}) / B`` (exact); centroid grad
    ``sum_{i: y_i = k} (c_k - f_i) / (1 + n_k) / B`` which ignores ``grad_output`` (D3).
    ``class_counts`` (K,) is ``n_k``, the batch's label histogram (the global batch's under DDP).
    """

    @staticmethod
    def forward(ctx, feat: Tensor, labels: Tensor, centroids: Tensor, class_counts: Tensor) -> Tensor:
        ctx.save_for_backward(feat, labels, centroids, class_counts)
        return (feat - centroids.index_select(0, labels)).pow(2).sum() / 2.0 / feat.shape[0]

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        feat, labels, centroids, class_counts = ctx.saved_tensors
        batch = feat.shape[0]
        diff = centroids.index_select(0, labels) - feat  # (B, D)
        grad_feat = grad_centroids = None
        if ctx.needs_input_grad[0]:
            grad_feat = -grad_output * diff / batch
        if ctx.needs_input_grad[2]:
            counts = 1.0 + class_counts.to(feat.dtype)
            summed = torch.zeros_like(centroids).index_add_(0, labels, diff)
            grad_centroids = summed / counts.unsqueeze(1) / batch
        return grad_feat, None, grad_centroids, None


class DiscCentroidsLoss(nn.Module):
    """``loss = attract + repel_weight * repel`` over direct features and class centroids::

        attract = 1/(2B) sum_i ||f_i - c_{y_i}||^2
        S[i,k]  = ||f_i - c_k||^2  (GEMM form), with S[i, y_i] = 0
        repel   = clamp(repel_margin - sum_{i,k} S[i,k] / (B*K), 0, 1e6)

    The mean divides by B*K although the B positives are zeroed (D4). The repel term is zero
    (no gradient) whenever the mean masked squared distance exceeds the margin.

    ``gradient="official"`` reproduces the official custom backward of the attract term: the
    centroid gradient is divided by ``1 + n_k`` and **not** scaled by the incoming gradient,
    so a loss weight (the official 0.01) does not scale it (D3). ``gradient="autograd"`` gives
    the exact gradient of the same loss.

    Parameter ``centroids`` (K, D), initialised randn as the official code (normally replaced
    by :func:`oltr.compute_centroids` right away). ``forward(feat (B, D) float, labels (B,)
    int64 in [0, K)) -> loss`` (0-dim). :meth:`terms` returns the parts (:class:`CentroidLossTerms`).
    """

    def __init__(self, num_classes: int, feat_dim: int, repel_margin: float = 10.0,
                 repel_weight: float = 0.01, gradient: str = "official") -> None:
        super().__init__()
        if int(num_classes) < 1 or int(feat_dim) < 1:
            raise ValueError(f"num_classes and feat_dim must be >= 1, got {num_classes} and {feat_dim}")
        if gradient not in GRADIENT_MODES:
            raise ValueError(f"gradient must be one of {GRADIENT_MODES}, got {gradient!r}")
        self.num_classes = int(num_classes)
        self.feat_dim = int(feat_dim)
        self.repel_margin = float(repel_margin)
        self.repel_weight = float(repel_weight)
        self.gradient = gradient
        self.centroids = nn.Parameter(torch.randn(self.num_classes, self.feat_dim))

    def _check(self, feat: Tensor, labels: Tensor) -> None:
        if feat.dim() != 2 or feat.shape[1] != self.feat_dim or feat.shape[0] < 1:
            raise ValueError(f"feat must have shape (B, {self.feat_dim}) with B >= 1, got {tuple(feat.shape)}")
        if labels.dim() != 1 or labels.shape[0] != feat.shape[0]:
            raise ValueError(f"labels must have shape ({feat.shape[0]},), got {tuple(labels.shape)}")
        if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {bad}")

    def _class_histogram(self, labels: Tensor, dtype: torch.dtype) -> Tensor:
        """``n_k``: (K,) label counts of the batch (a subclass may reduce them over processes)."""
        ones = torch.ones(labels.shape[0], dtype=dtype, device=labels.device)
        return torch.zeros(self.num_classes, dtype=dtype, device=labels.device).index_add_(0, labels, ones)

    def _masked_mean(self, masked_sum: Tensor, batch: int) -> Tensor:
        """``sum_{i,k} S[i,k] / (B*K)`` from the batch's masked sum (a subclass may reduce it)."""
        return masked_sum / (batch * self.num_classes)

    def terms(self, feat: Tensor, labels: Tensor) -> CentroidLossTerms:
        """``(attract, repel, mean_masked_sqdist)``, each 0-dim, unweighted."""
        self._check(feat, labels)
        labels = labels.to(device=feat.device, dtype=torch.long)
        centroids = self.centroids
        if self.gradient == "official":
            attract = _OfficialAttract.apply(feat, labels, centroids, self._class_histogram(labels, feat.dtype))
        else:
            attract = (feat - centroids.index_select(0, labels)).pow(2).sum() / 2.0 / feat.shape[0]
        batch = feat.shape[0]
        sq_dist = torch.addmm((feat * feat).sum(1, keepdim=True) + (centroids * centroids).sum(1).unsqueeze(0),
                              feat, centroids.t(), beta=1.0, alpha=-2.0)
        positives = torch.zeros_like(sq_dist, dtype=torch.bool)
        positives[torch.arange(batch, device=feat.device), labels] = True
        mean_masked = self._masked_mean(sq_dist.masked_fill(positives, 0.0).sum(), batch)
        repel = torch.clamp(self.repel_margin - mean_masked, 0.0, _REPEL_CAP)
        return CentroidLossTerms(attract, repel, mean_masked)

    def forward(self, feat: Tensor, labels: Tensor) -> Tensor:
        terms = self.terms(feat, labels)
        return terms.attract + self.repel_weight * terms.repel

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, repel_margin={self.repel_margin}, "
                f"repel_weight={self.repel_weight}, gradient={self.gradient!r}")
