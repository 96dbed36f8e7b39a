"""Nearest class mean classifier (NCM; Kang et al., ICLR 2020, "Decoupling"): a classifier-free
re-balancing baseline — every class gets one mean, whatever its training count.

Features are centred on the training mean and L2-normalised; a class is represented by the mean
of its normalised features; a sample takes the label of the nearest class mean (exact L2, through
:class:`oltr.CentroidIndex`, ties by the lower label).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from oltr.scores._feature_base import _as_features, _as_labels

__all__ = ["NCM"]


def _centre_normalise(features: np.ndarray, mean: np.ndarray) -> np.ndarray:
    centred = features - mean
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.where(norms > 0, norms, 1.0)


class NCM:
    """``NCM(backend="auto").fit(features (N, D), labels (N,))``; ``predict(features (M, D)) ->
    int64 (M,)`` labels; ``distances(features, k) -> (dist float32 (M, k), labels int64 (M, k))``
    the k nearest class means; ``logits(features) -> float64 (M, K)`` = minus the squared
    distances (for softmax-based scores). Every label in ``0..K-1`` needs a sample."""

    def __init__(self, backend: str = "auto") -> None:
        self.backend = backend
        self.mean: Optional[np.ndarray] = None       # (D,) training mean
        self.class_means: Optional[np.ndarray] = None  # (K, D) in the normalised space
        self.index: Optional[Any] = None

    def fit(self, features: Any, labels: Any) -> "NCM":
        from oltr.memory import CentroidIndex

        feats = _as_features(features, "features")
        y = _as_labels(labels, feats.shape[0])
        if feats.shape[0] == 0:
            raise ValueError("features is empty: nothing to fit on")
        import torch

        from oltr.inference.class_means import ClassMeanAccumulator

        self.mean = feats.mean(axis=0)
        normalised = _centre_normalise(feats, self.mean)
        acc = ClassMeanAccumulator.of(torch.tensor(normalised), torch.tensor(y), int(y.max()) + 1)
        self.class_means = acc.means(dtype=torch.float64, sample="training sample").numpy()
        self.index = CentroidIndex(self.class_means.astype(np.float32), backend=self.backend)
        return self

    def _prepared(self, features: Any) -> np.ndarray:
        from oltr.errors import NotFittedError

        if self.index is None or self.mean is None:
            raise NotFittedError("NCM is not fitted: call fit(features, labels) first")
        feats = _as_features(features, "features")
        if feats.shape[1] != self.mean.shape[0]:
            raise ValueError(f"features must have D = {self.mean.shape[0]} (as fitted); got {feats.shape[1]}")
        return _centre_normalise(feats, self.mean)

    def distances(self, features: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        queries = self._prepared(features).astype(np.float32)
        return self.index.search(queries, k=k)  # type: ignore[union-attr]

    def predict(self, features: Any) -> np.ndarray:
        return np.asarray(self.distances(features, k=1)[1][:, 0], dtype=np.int64)

    def logits(self, features: Any) -> np.ndarray:
        q = self._prepared(features)
        assert self.class_means is not None
        m = self.class_means
        return -((q * q).sum(1, keepdims=True) - 2.0 * q @ m.T + (m * m).sum(1))

    @property
    def num_classes(self) -> int:
        return 0 if self.class_means is None else int(self.class_means.shape[0])
