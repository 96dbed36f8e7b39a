"""Mahalanobis (Lee, Lee, Lee, Shin, NeurIPS 2018) and relative Mahalanobis (Ren, Fort, Liu,
Roy, Padhy, Lakshminarayanan, arXiv:2106.09022, 2021) outlier scores.

Estimator (both): class means ``mu_k`` and one tied covariance, maximum likelihood
``Sigma = 1/N sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T``, used through its pseudo-inverse.

* ``Mahalanobis``: ``score(x) = min_k (x - mu_k)^T Sigma^+ (x - mu_k)``.
* ``RMD``: ``score(x) = min_k (MD_k(x) - MD_0(x))``, ``MD_0`` the Mahalanobis distance to the
  global mean under the global covariance ``1/N sum_i (x_i - mu_0)(x_i - mu_0)^T``.

Larger = more unknown. Distances are computed in float64 after whitening
(``||W (x - mu)||^2`` with ``W^T W = Sigma^+``), in chunks, so memory stays O(chunk × K).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from oltr.scores._feature_base import FeatureDetector

__all__ = ["RMD", "Mahalanobis", "whitening"]

_CHUNK = 4096


def whitening(covariance: np.ndarray, rcond: float = 1e-10) -> np.ndarray:
    """``W`` (r, D) with ``W^T W = pinv(covariance)`` (eigen-decomposition; eigenvalues below
    ``rcond · max eigenvalue`` are treated as zero, as :func:`numpy.linalg.pinv` does)."""
    values, vectors = np.linalg.eigh(covariance)
    keep = values > rcond * max(values.max(), 0.0)
    return (vectors[:, keep] / np.sqrt(values[keep])).T


def _min_sq_distance(z: np.ndarray, means: np.ndarray) -> np.ndarray:
    """``min_k ||z_i - means_k||^2`` (float64), chunked over rows."""
    mean_sq = (means * means).sum(1)
    out = np.empty(z.shape[0])
    for start in range(0, z.shape[0], _CHUNK):
        block = z[start:start + _CHUNK]
        d = (block * block).sum(1, keepdims=True) - 2.0 * block @ means.T + mean_sq
        out[start:start + _CHUNK] = np.maximum(d.min(axis=1), 0.0)
    return out


class Mahalanobis(FeatureDetector):
    """``fit(features (N, D), labels (N,))`` (every class in ``0..K-1`` needs ≥ 1 sample);
    ``predict(features (M, D)) -> (M,)`` the minimum squared Mahalanobis distance to a class
    mean under the tied covariance."""

    needs_labels = True

    def __init__(self) -> None:
        self.means: Optional[np.ndarray] = None      # (K, D)
        self.whiten: Optional[np.ndarray] = None     # (r, D)

    def _class_statistics(self, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from oltr.inference.class_means import ClassMeanAccumulator

        acc = ClassMeanAccumulator.of(torch.tensor(features), torch.tensor(labels), int(labels.max()) + 1)
        means = acc.means(dtype=torch.float64, sample="training sample").numpy()
        centred = features - means[labels]
        return means, centred.T @ centred / features.shape[0]

    def _fit(self, features: np.ndarray, labels: Optional[np.ndarray]) -> None:
        assert labels is not None
        means, covariance = self._class_statistics(features, labels)
        self.whiten = whitening(covariance)
        self.means = means @ self.whiten.T

    def _score(self, features: np.ndarray) -> np.ndarray:
        assert self.means is not None and self.whiten is not None
        return _min_sq_distance(features @ self.whiten.T, self.means)


class RMD(Mahalanobis):
    """Relative Mahalanobis: :class:`Mahalanobis`'s score minus the squared Mahalanobis
    distance to the global mean under the global covariance (same estimator)."""

    def __init__(self) -> None:
        super().__init__()
        self.global_mean: Optional[np.ndarray] = None
        self.global_whiten: Optional[np.ndarray] = None

    def _fit(self, features: np.ndarray, labels: Optional[np.ndarray]) -> None:
        super()._fit(features, labels)
        mean = features.mean(axis=0)
        centred = features - mean
        self.global_whiten = whitening(centred.T @ centred / features.shape[0])
        self.global_mean = mean @ self.global_whiten.T

    def _score(self, features: np.ndarray) -> np.ndarray:
        assert self.global_whiten is not None and self.global_mean is not None
        md0 = _min_sq_distance(features @ self.global_whiten.T, self.global_mean[None, :])
        return super()._score(features) - md0
