"""Plain stage-1 classifier (official ``DotProduct_Classifier``): one linear layer ``fc``."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from oltr.nn.extras import Extras

__all__ = ["DotProductClassifier"]


class DotProductClassifier(nn.Module):
    """``logits = fc(x)``, with ``fc = nn.Linear(feat_dim, num_classes)`` (state-dict keys
    ``fc.weight`` (K, D) and ``fc.bias`` (K,), as the official stage-1 classifier).

    ``forward(x, centroids=None) -> (logits (B, K), Extras(direct=x))``: the same call
    shape as :class:`~oltr.nn.MetaEmbeddingClassifier`; ``centroids`` is accepted and ignored.
    """

    def __init__(self, feat_dim: int, num_classes: int) -> None:
        super().__init__()
        if int(feat_dim) < 1 or int(num_classes) < 1:
            raise ValueError(f"feat_dim and num_classes must be >= 1, got {feat_dim} and {num_classes}")
        self.feat_dim = int(feat_dim)
        self.num_classes = int(num_classes)
        self.fc = nn.Linear(self.feat_dim, self.num_classes)

    def forward(self, x: Tensor, centroids: Optional[Tensor] = None) -> tuple[Tensor, Extras]:
        if x.dim() != 2 or x.shape[1] != self.feat_dim:
            raise ValueError(f"x must have shape (B, {self.feat_dim}), got {tuple(x.shape)}")
        return self.fc(x), Extras(direct=x)
