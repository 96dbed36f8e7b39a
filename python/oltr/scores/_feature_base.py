"""Base of the detectors fitted on training **features** (KNN, Mahalanobis, RMD, ViM, ReAct).

Every such detector:

* ``fit(features (N, D), labels (N,) or None)`` — or ``fit(loader, model=model)``, which runs
  ``model`` (eval mode, no grad) over ``loader`` (items ``(images, labels, ...)``) and fits on
  its direct features (``extras.direct``) and the loader's labels;
* ``predict(features (M, D)) -> (M,)`` outlier scores, **larger = more unknown** — or
  ``predict(images, model=model)``; numpy in → numpy out, torch in → torch out (float64
  numpy / the input's device, float64);
* ``fit_features`` / ``predict_features``: aliases of the feature forms (pytorch-ood names);
* raises :class:`oltr.errors.NotFittedError` when used before ``fit``.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np
import torch

from oltr.errors import NotFittedError
from oltr.scores._tensor import real_input
from oltr.scores.detectors import Detector

__all__ = ["FeatureDetector", "features_of"]


def _as_features(value: Any, name: str) -> np.ndarray:
    """float64 ``(N, D)`` numpy copy of ``value`` (array or tensor); complex, non-numeric,
    non-finite or non-2-D input raises naming ``name``."""
    array = real_input(value, name)
    array = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else array
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must be a float array; got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D); got shape {array.shape}")
    array = np.array(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _as_labels(value: Any, n: int) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({n},); got {array.dtype} {array.shape}")
    if n and array.min() < 0:
        raise ValueError("labels must be >= 0 (fit on known training samples only)")
    return array.astype(np.int64)


@torch.no_grad()
def features_of(model: torch.nn.Module, batches: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Direct features float64 ``(N, D)`` and labels int64 ``(N,)`` of ``model`` over
    ``batches`` (items ``(images, labels, ...)``), in eval mode (the model's modes are restored)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    device = next(model.parameters()).device
    feats, labels = [], []
    try:
        for batch in batches:
            _, extras = model(batch[0].to(device))
            feats.append(extras.direct.detach().double().cpu())
            labels.append(torch.as_tensor(batch[1]).to(torch.int64).cpu())
    finally:
        for module, training in modes:
            module.training = training
    if not feats:
        raise ValueError("the loader yielded no batch: nothing to fit on")
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


class FeatureDetector(Detector):
    """Shared fit/predict plumbing; subclasses implement ``_fit(features, labels)`` and
    ``_score(features) -> (M,) float64`` on float64 numpy arrays."""

    #: whether ``fit`` needs labels (class-conditional detectors)
    needs_labels = False
    _dim: Optional[int] = None

    def fit(self, features: Any, labels: Any = None, *, model: Optional[torch.nn.Module] = None) -> "FeatureDetector":
        if model is not None:
            feats, loader_labels = features_of(model, features)
            labels = loader_labels if labels is None else labels
        else:
            feats = _as_features(features, "features")
        if feats.shape[0] == 0:
            raise ValueError("features is empty: nothing to fit on")
        y = None
        if labels is not None:
            y = _as_labels(labels, feats.shape[0])
        elif self.needs_labels:
            raise ValueError(f"{type(self).__name__}.fit needs labels (class-conditional detector)")
        self._fit(feats, y)
        self._dim = feats.shape[1]
        return self

    def predict(self, x: Any, model: Optional[torch.nn.Module] = None) -> Any:
        if self._dim is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(features, labels) first")
        if model is not None:
            with torch.no_grad():
                was = model.training
                model.eval()
                try:
                    _, extras = model(x.to(next(model.parameters()).device))
                finally:
                    model.train(was)
            x = extras.direct
        feats = _as_features(x, "features")
        if feats.shape[1] != self._dim:
            raise ValueError(f"features must have D = {self._dim} (as fitted); got {feats.shape[1]}")
        scores = self._score(feats)
        if isinstance(x, torch.Tensor):
            return torch.from_numpy(scores).to(x.device)
        return scores

    def fit_features(self, features: Any, labels: Any = None) -> "FeatureDetector":
        """Alias of ``fit(features, labels)``."""
        return self.fit(features, labels)

    def predict_features(self, features: Any) -> Any:
        """Alias of ``predict(features)``."""
        return self.predict(features)

    def _fit(self, features: np.ndarray, labels: Optional[np.ndarray]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _score(self, features: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError
