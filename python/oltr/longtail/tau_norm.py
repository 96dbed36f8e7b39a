"""τ-normalised classifier (Kang et al., "Decoupling Representation and Classifier for
Long-Tailed Recognition", ICLR 2020).

A classifier trained on long-tailed data has larger weight norms for head classes; dividing
each row by its norm to the power ``tau`` (0 = unchanged, 1 = fully normalised) rebalances the
decision boundaries without retraining. It applies to a **dot-product** classifier (the plain
model's ``fc``). On :class:`oltr.nn.CosNormClassifier` it is a no-op: the cosine classifier
already divides every row by its norm, so ``w / ||w||^tau`` gives the same logits for any
``tau``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from oltr.longtail.adjust import DEFAULT_TAUS, _balanced_accuracy

__all__ = ["tau_normalize", "tune_tau_normalization"]


def tau_normalize(weight: Any, tau: float) -> Any:
    """``weight[k] / ||weight[k]||^tau`` for every row, same type as ``weight`` (numpy in →
    numpy out; torch in → torch out, differentiable). ``weight``: ``(K, D)`` float. A zero row
    stays zero. ``tau`` must be finite and ≥ 0."""
    tau = float(tau)
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"tau must be finite and >= 0; got {tau}")
    if hasattr(weight, "detach"):
        import torch

        if weight.ndim != 2 or not torch.is_floating_point(weight):
            raise ValueError(f"weight must be a real floating (K, D) tensor; got {tuple(weight.shape)} {weight.dtype}")
        norms = weight.norm(dim=1, keepdim=True)
        return weight / torch.where(norms > 0, norms, torch.ones_like(norms)).pow(tau)
    array = np.asarray(weight)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"weight must be a real floating (K, D) array; got shape {array.shape} dtype {array.dtype}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.where(norms > 0, norms, 1.0) ** tau).astype(array.dtype, copy=False)


def tune_tau_normalization(
    val_features: Any, val_labels: Any, weight: Any, bias: Any = None, taus: Sequence[float] = DEFAULT_TAUS,
) -> tuple[float, dict[float, float]]:
    """Choose ``tau`` for :func:`tau_normalize` on **validation** data: balanced top-1 of
    ``features @ tau_normalize(weight, tau).T (+ bias)`` over the known samples (labels ``-1``
    ignored); ties go to the smallest ``tau``. ``val_features`` ``(N, D)``, ``weight`` ``(K, D)``,
    ``bias`` ``(K,)`` or None. Returns ``(best_tau, {tau: balanced accuracy})``."""
    def numpy(value: Any) -> np.ndarray:
        return np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)

    features, labels, w = numpy(val_features).astype(np.float64), numpy(val_labels).astype(np.int64), numpy(weight)
    if features.ndim != 2 or w.ndim != 2 or features.shape[1] != w.shape[1]:
        raise ValueError(f"val_features (N, D) and weight (K, D) must share D; got {features.shape} and {w.shape}")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"val_labels must be ({features.shape[0]},); got {labels.shape}")
    known = labels != -1
    if not known.any():
        raise ValueError("val_labels has no known sample (all -1): nothing to tune tau on")
    if len(taus) == 0:
        raise ValueError("taus is empty")
    b = 0.0 if bias is None else numpy(bias).astype(np.float64)
    table = {}
    for tau in taus:
        logits = features[known] @ tau_normalize(w.astype(np.float64), tau).T + b
        table[float(tau)] = _balanced_accuracy(logits.argmax(axis=1), labels[known])
    best = max(table, key=lambda t: (table[t], -t))
    return best, table
