"""Detector objects in the pytorch-ood style: ``fit(...)`` then ``predict(...)``.

``predict(x)`` (also ``detector(x)``) returns an **outlier score, larger = more
unknown** (see :mod:`oltr.scores.logits` and :mod:`oltr.scores.centroids` for the sign
flips). Logit detectors need no fitting (``fit`` returns ``self``); centroid detectors
are fitted on training features and labels (class means) or given centroids directly,
and raise :class:`oltr.errors.NotFittedError` when used before.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from oltr.errors import NotFittedError
from oltr.memory.index import REACHABILITY_SCALE
from oltr.scores._tensor import as_float_tensor, real_input
from oltr.scores.logits import energy_score, max_logit_score, msp_score

__all__ = [
    "Detector",
    "EnergyBased",
    "MaxLogit",
    "MaxSoftmax",
    "NearestCentroid",
    "Reachability",
    "class_means",
]


class Detector:
    """Base class: ``fit`` returns ``self``; ``__call__`` is ``predict``."""

    def fit(self, *args, **kwargs) -> "Detector":
        return self

    def predict(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x):
        return self.predict(x)


class MaxSoftmax(Detector):
    """``-max softmax(logits)`` (MSP, sign flipped). ``predict(logits (N, K)) -> (N,)``."""

    def predict(self, logits):
        return msp_score(logits)


class MaxLogit(Detector):
    """``-max logits`` (MaxLogit, sign flipped). ``predict(logits (N, K)) -> (N,)``."""

    def predict(self, logits):
        return max_logit_score(logits)


class EnergyBased(Detector):
    """Energy ``-T·logsumexp(logits/T)``. ``predict(logits (N, K)) -> (N,)``."""

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def predict(self, logits):
        return energy_score(logits, self.temperature)


def class_means(features, labels, num_classes: Optional[int] = None) -> torch.Tensor:
    """Mean feature of each class: float32 ``(K, D)`` from features ``(N, D)`` and
    labels ``(N,)`` in ``0..K-1``. A class without samples raises ``ValueError``."""
    f, _ = as_float_tensor(features, "features", 2)
    y = torch.as_tensor(real_input(labels, "labels"))
    if y.shape != (f.shape[0],):
        raise ValueError(f"labels must have shape ({f.shape[0]},), got {tuple(y.shape)}")
    y = y.to(device=f.device, dtype=torch.int64)
    if y.numel() and int(y.min()) < 0:
        raise ValueError("labels must be >= 0 (fit on known samples only)")
    k = int(num_classes) if num_classes is not None else (int(y.max()) + 1 if y.numel() else 0)
    if k == 0:
        raise ValueError("no labels: cannot compute class means")
    if y.numel() and int(y.max()) >= k:
        raise ValueError(f"labels go up to {int(y.max())}, beyond num_classes={k}")
    from oltr.inference.class_means import ClassMeanAccumulator

    acc = ClassMeanAccumulator(k, f.device)
    acc.add(f, y)
    return acc.means(where="; cannot compute their means")


class _CentroidDetector(Detector):
    """Fitted on class means (``fit``) or given centroids (``fit_centroids``); the
    :class:`oltr.CentroidIndex` over them is built once there and reused by every ``predict``."""

    def __init__(self, backend: str = "auto") -> None:
        self.backend = backend
        self.centroids: Optional[torch.Tensor] = None
        self.index: Optional[Any] = None

    def fit(self, features, labels, num_classes: Optional[int] = None) -> "_CentroidDetector":
        """Centroids = class means of ``features (N, D)`` by ``labels (N,)``."""
        return self._set(class_means(features, labels, num_classes).cpu())

    def fit_centroids(self, centroids) -> "_CentroidDetector":
        """Use given centroids ``(K, D)`` (e.g. a trained OLTR model's memory)."""
        c, _ = as_float_tensor(centroids, "centroids", 2)
        return self._set(c.to(torch.float32).cpu())

    def _set(self, centroids: torch.Tensor) -> "_CentroidDetector":
        from oltr.memory import CentroidIndex

        self.centroids = centroids
        self.index = CentroidIndex(centroids.numpy(), backend=self.backend)
        return self

    def _checked(self, features):
        if self.index is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or fit_centroids() first")
        features = real_input(features, "features")
        if isinstance(features, torch.Tensor):
            return features.detach().cpu().to(torch.float32)
        return np.asarray(features, dtype=np.float32)


class NearestCentroid(_CentroidDetector):
    """Distance to the nearest class centroid. ``predict(features (N, D)) -> (N,)``."""

    def predict(self, features):
        queries = self._checked(features)
        dist, _ = self.index.search(queries, k=1)
        return dist[:, 0]


class Reachability(_CentroidDetector):
    """OLTR reachability, sign flipped: ``-scale / min_k ‖f − c_k‖``.
    ``predict(features (N, D)) -> (N,)``."""

    def __init__(self, scale: float = REACHABILITY_SCALE, backend: str = "auto") -> None:
        super().__init__(backend)
        self.scale = float(scale)

    def predict(self, features):
        queries = self._checked(features)
        return -self.index.reachability(queries, scale=self.scale)
