"""ReAct — rectified activations (Sun, Guo, Li, NeurIPS 2021), with the energy score, for a
linear head.

``fit`` sets the clip ``c`` = the ``percentile``-th percentile of all training feature
activations; then ``score(x) = -logsumexp(W min(x, c) + b)`` (the energy of the rectified
features), larger = more unknown.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from oltr.scores._feature_base import FeatureDetector
from oltr.scores._linear_head import LinearHeadDetector, linear_head
from oltr.scores.vim import _logsumexp

__all__ = ["ReAct"]


class ReAct(LinearHeadDetector, FeatureDetector):
    """``ReAct(percentile=90, head=None)``: ``percentile`` in (0, 100]; ``head`` as for
    :class:`oltr.scores.ViM`. ``fit(features (N, D))``; ``predict(features (M, D)) -> (M,)``."""

    def __init__(self, percentile: float = 90, head: Any = None) -> None:
        percentile = float(percentile)
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100]; got {percentile}")
        self.percentile = percentile
        self.head = None if head is None else linear_head(head)
        self.clip: Optional[float] = None

    def fit(self, features: Any, labels: Any = None, *, model: Optional[torch.nn.Module] = None) -> "ReAct":
        self._take_head(model, "ReAct(head=(weight, bias))")
        return super().fit(features, labels, model=model)  # type: ignore[return-value]

    def _fit(self, features: np.ndarray, labels: Optional[np.ndarray]) -> None:
        self._checked_head(features)
        self.clip = float(np.percentile(features, self.percentile))

    def _score(self, features: np.ndarray) -> np.ndarray:
        assert self.head is not None and self.clip is not None
        weight, bias = self.head
        return -_logsumexp(np.minimum(features, self.clip) @ weight.T + bias)

    def __repr__(self) -> str:
        return f"ReAct(percentile={self.percentile})"
