"""ViM — Virtual-logit Matching (Wang, Li, Feng, Zhang, CVPR 2022), for a linear head.

With the head ``logits = W x + b``: origin ``u = -pinv(W) b``; the principal subspace is spanned
by the top-``dim`` eigenvectors of the (uncentred about u) training-feature covariance
``1/N sum_i (x_i - u)(x_i - u)^T``; ``R`` spans the rest. ``alpha = mean_i max_k logit_ik /
mean_i ||R^T (x_i - u)||`` over the training set. Then

    score(x) = alpha * ||R^T (x - u)|| - logsumexp(W x + b)

(the paper's ``-ViM``), larger = more unknown.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from oltr.scores._feature_base import FeatureDetector
from oltr.scores._linear_head import LinearHeadDetector, linear_head

__all__ = ["ViM"]


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


class ViM(LinearHeadDetector, FeatureDetector):
    """``ViM(dim, head=None)``: ``dim`` (1 ≤ dim < D) principal dimensions kept; ``head``: the
    linear classifier, ``(weight (K, D), bias (K,))`` or an ``nn.Linear`` (or, when fitting with
    ``model=``, taken from ``model.classifier.fc``). ``fit(features (N, D))`` on training
    features; ``predict(features (M, D)) -> (M,)``."""

    def __init__(self, dim: int, head: Any = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1; got {dim!r}")
        self.dim = int(dim)
        self.head = None if head is None else linear_head(head)
        self.origin: Optional[np.ndarray] = None
        self.residual_basis: Optional[np.ndarray] = None
        self.alpha: Optional[float] = None

    def fit(self, features: Any, labels: Any = None, *, model: Optional[torch.nn.Module] = None) -> "ViM":
        self._take_head(model, "ViM(dim, head=(weight, bias))")
        return super().fit(features, labels, model=model)  # type: ignore[return-value]

    def _fit(self, features: np.ndarray, labels: Optional[np.ndarray]) -> None:
        weight, bias = self._checked_head(features)
        if self.dim >= features.shape[1]:
            raise ValueError(f"dim = {self.dim} must be < D = {features.shape[1]} "
                             "(nothing would be left for the residual)")
        self.origin = -np.linalg.pinv(weight) @ bias
        centred = features - self.origin
        values, vectors = np.linalg.eigh(centred.T @ centred / features.shape[0])
        order = np.argsort(values)[::-1]
        self.residual_basis = vectors[:, order[self.dim:]]
        residual = np.linalg.norm(centred @ self.residual_basis, axis=1)
        max_logit = (features @ weight.T + bias).max(axis=1)
        if residual.mean() <= 0:
            raise ValueError("the training features lie in the principal subspace: no residual to match (lower dim)")
        self.alpha = float(max_logit.mean() / residual.mean())

    def _score(self, features: np.ndarray) -> np.ndarray:
        assert self.head is not None and self.origin is not None and self.residual_basis is not None
        weight, bias = self.head
        virtual = self.alpha * np.linalg.norm((features - self.origin) @ self.residual_basis, axis=1)
        return virtual - _logsumexp(features @ weight.T + bias)

    def __repr__(self) -> str:
        return f"ViM(dim={self.dim})"
