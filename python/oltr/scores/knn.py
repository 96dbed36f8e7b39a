"""KNN outlier score (Sun, Ming, Zhu, Li, "Out-of-Distribution Detection with Deep Nearest
Neighbors", ICML 2022).

    score(x) = || x/||x|| - z_(k) ||,   z_(k) = the k-th nearest L2-normalised training feature

Larger = more unknown. The normalised training features are kept in a
:class:`oltr.CentroidIndex` (the Rust core by default: exact, multi-threaded, any k ≤ N), so
it scales to large training sets (10^6 rows × k = 1000 is a search of that index).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from oltr.scores._feature_base import FeatureDetector

__all__ = ["KNN"]


def _normalise(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


class KNN(FeatureDetector):
    """``KNN(k=50, backend="auto")``; ``fit(features (N, D), labels=None)``;
    ``predict(features (M, D)) -> (M,)`` the Euclidean distance of each L2-normalised query to
    its k-th nearest L2-normalised training feature (ties by the lower training index).

    ``k`` must be ≤ the number of training rows (ValueError at ``fit`` otherwise). ``backend``:
    the :class:`oltr.CentroidIndex` backend (``"auto"``, ``"rust"``, ``"faiss"``, ``"torch"``).
    """

    def __init__(self, k: int = 50, backend: str = "auto") -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an integer >= 1; got {k!r}")
        self.k, self.backend = int(k), backend
        self.index: Optional[Any] = None

    def _fit(self, features: np.ndarray, labels: Optional[np.ndarray]) -> None:
        from oltr.memory import CentroidIndex

        if self.k > features.shape[0]:
            raise ValueError(f"k = {self.k} is more than the {features.shape[0]} training features")
        self.index = CentroidIndex(_normalise(features).astype(np.float32), backend=self.backend)

    def _score(self, features: np.ndarray) -> np.ndarray:
        assert self.index is not None
        dist, _ = self.index.search(_normalise(features).astype(np.float32), k=self.k)
        return np.asarray(dist[:, -1], dtype=np.float64)

    def __repr__(self) -> str:
        return f"KNN(k={self.k}, backend={self.backend!r})"
