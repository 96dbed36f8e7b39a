"""Meta-embedding classifier (official ``MetaEmbedding_Classifier``)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from oltr.memory import REACHABILITY_EPS
from oltr.nn._nearest import NearestCentroidDispatch
from oltr.nn.cosnorm import CosNormClassifier
from oltr.nn.extras import ClassifierExtras

__all__ = ["MetaEmbeddingClassifier"]


class MetaEmbeddingClassifier(nn.Module):
    """Meta-embedding + cosine classifier, exactly the official forward::

        d_b      = min_k ||x_b - c_k||                 nearest = argmin
        reach    = reach_scale / max(d, 1e-12)         (B,)  (official: inf at d = 0)
        memory   = softmax(fc_hallucinator(x)) @ C     (B, D)
        selector = tanh(fc_selector(x))                (B, D)
        infused  = selector * memory                   (not scaled by reach, D21)
        meta     = reach * (x + infused)
        logits   = cosnorm_classifier(meta)            (B, K)

    Parameters (official state-dict keys): ``fc_hallucinator.{weight (K,D), bias (K,)}``,
    ``fc_selector.{weight (D,D), bias (D,)}``, ``cosnorm_classifier.weight (K,D)``.

    ``forward(x, centroids) -> (logits, ClassifierExtras)`` with ``x`` (B, D) float and
    ``centroids`` (K, D). The centroids enter **detached** (the official training passes
    ``criterion.centroids.data``), so the CE loss never moves the memory; gradients reach
    ``x`` through direct, hallucinator, selector and the reachability (through the nearest
    centroid's distance). The nearest centroid comes from the Rust core at CPU inference and
    from the differentiable torch path otherwise (``nearest_backend``: ``"auto"``, ``"torch"``,
    ``"rust"``; see :mod:`oltr.nn._nearest`). ``squash`` selects the cosine classifier's form.
    """

    def __init__(self, feat_dim: int, num_classes: int, reach_scale: float = 10.0, scale: float = 16.0,
                 squash: str = "code", nearest_backend: str = "auto") -> None:
        super().__init__()
        if int(feat_dim) < 1 or int(num_classes) < 1:
            raise ValueError(f"feat_dim and num_classes must be >= 1, got {feat_dim} and {num_classes}")
        self.feat_dim = int(feat_dim)
        self.num_classes = int(num_classes)
        self.reach_scale = float(reach_scale)
        self.fc_hallucinator = nn.Linear(self.feat_dim, self.num_classes)
        self.fc_selector = nn.Linear(self.feat_dim, self.feat_dim)
        self.cosnorm_classifier = CosNormClassifier(self.feat_dim, self.num_classes, scale=scale, squash=squash)
        self.nearest = NearestCentroidDispatch(nearest_backend)

    @property
    def nearest_backend(self) -> str:
        return self.nearest.backend

    @nearest_backend.setter
    def nearest_backend(self, backend: str) -> None:
        self.nearest = NearestCentroidDispatch(backend)

    def forward(self, x: Tensor, centroids: Tensor) -> tuple[Tensor, ClassifierExtras]:
        if x.dim() != 2 or x.shape[1] != self.feat_dim:
            raise ValueError(f"x must have shape (B, {self.feat_dim}), got {tuple(x.shape)}")
        if not isinstance(centroids, Tensor) or centroids.dim() != 2 or tuple(centroids.shape) != (self.num_classes, self.feat_dim):
            shape = tuple(centroids.shape) if isinstance(centroids, Tensor) else type(centroids).__name__
            raise ValueError(f"centroids must have shape ({self.num_classes}, {self.feat_dim}), got {shape}")
        if centroids.device != x.device:
            raise ValueError(f"centroids are on {centroids.device} but x is on {x.device}")
        nearest_dist, nearest_idx = self.nearest(x, centroids)
        memory_bank = centroids.detach().to(x.dtype)
        reachability = self.reach_scale / nearest_dist.clamp_min(REACHABILITY_EPS)
        memory = torch.softmax(self.fc_hallucinator(x), dim=1) @ memory_bank
        selector = torch.tanh(self.fc_selector(x))
        infused = selector * memory
        meta_embedding = reachability.unsqueeze(1) * (x + infused)
        logits = self.cosnorm_classifier(meta_embedding)
        extras = ClassifierExtras(direct=x, infused=infused, memory=memory, selector=selector,
                                  reachability=reachability, nearest=nearest_idx, meta_embedding=meta_embedding)
        return logits, extras

    def extra_repr(self) -> str:
        return f"feat_dim={self.feat_dim}, num_classes={self.num_classes}, reach_scale={self.reach_scale}"
