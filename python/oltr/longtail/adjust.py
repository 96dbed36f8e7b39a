"""Post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021).

A classifier trained on long-tailed data learns ``p(y | x)`` under the training prior ``π``;
subtracting ``τ · log π_y`` from the logits moves its decisions towards the balanced-error
optimum (τ = 1 is the Bayes-optimal correction when the logits are calibrated).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["DEFAULT_TAUS", "log_prior", "logit_adjust", "tune_tau"]

#: the τ grid that :func:`tune_tau` and :func:`oltr.longtail.tune_tau_normalization` search
DEFAULT_TAUS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(21))  # 0.0 ... 2.0


def _counts(train_counts: Any, num_classes: int | None = None) -> np.ndarray:
    counts = np.asarray(train_counts.detach().cpu() if hasattr(train_counts, "detach") else train_counts)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"train_counts must be a non-empty 1-D sequence of per-class counts; got shape {counts.shape}")
    if not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)):
        raise TypeError(f"train_counts must be numbers; got dtype {counts.dtype}")
    if not np.all(np.isfinite(counts)) or np.any(counts <= 0):
        bad = int(np.flatnonzero(~np.isfinite(counts) | (counts <= 0))[0])
        raise ValueError(f"train_counts must be finite and > 0 (log prior); class {bad} has {counts[bad]!r}")
    if num_classes is not None and counts.size != num_classes:
        raise ValueError(f"train_counts has {counts.size} classes but the logits have {num_classes}")
    return counts.astype(np.float64)


def log_prior(train_counts: Any, num_classes: int | None = None) -> np.ndarray:
    """``log(train_counts / sum(train_counts))``, float64 ``(K,)``.

    Raises ValueError for an empty or non-1-D sequence, a count ≤ 0 or non-finite, or a length
    other than ``num_classes`` (when given).
    """
    counts = _counts(train_counts, num_classes)
    return np.log(counts / counts.sum())


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not np.isfinite(tau):
        raise ValueError(f"tau must be finite; got {tau}")
    return tau


def logit_adjust(logits: Any, train_counts: Any, tau: float = 1.0) -> Any:
    """``logits - tau * log(prior)``, same type as ``logits`` (numpy in → numpy out, torch in →
    torch out, on its device and dtype; differentiable).

    Args:
        logits: ``(N, K)`` float array or tensor.
        train_counts: ``(K,)`` training images per class.
        tau: adjustment strength (0 = no change; 1 = the Bayes-optimal correction).
    """
    tau = _check_tau(tau)
    if hasattr(logits, "detach"):  # torch
        import torch

        if logits.ndim != 2 or logits.is_complex():
            raise ValueError(f"logits must be a real (N, K) tensor; got {tuple(logits.shape)} {logits.dtype}")
        prior = torch.as_tensor(log_prior(train_counts, logits.shape[1]), dtype=logits.dtype, device=logits.device)
        return logits - tau * prior
    array = np.asarray(logits)
    if array.ndim != 2 or np.iscomplexobj(array) or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"logits must be a real (N, K) array; got shape {array.shape} dtype {array.dtype}")
    dtype = array.dtype if np.issubdtype(array.dtype, np.floating) else np.float64
    return (array - tau * log_prior(train_counts, array.shape[1])).astype(dtype, copy=False)


def _balanced_accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    classes = np.unique(labels)
    return float(np.mean([np.mean(preds[labels == c] == c) for c in classes]))


def tune_tau(
    val_logits: Any, val_labels: Any, train_counts: Any, taus: Sequence[float] = DEFAULT_TAUS,
) -> tuple[float, dict[float, float]]:
    """Choose ``tau`` for :func:`logit_adjust` on **validation** data (never on test data).

    The criterion is the balanced (mean per-class) top-1 accuracy of the adjusted logits on the
    known validation samples (labels ``-1`` are ignored); ties go to the smallest ``tau``.

    Returns:
        ``(best_tau, {tau: balanced accuracy})``.
    """
    logits = np.asarray(val_logits.detach().cpu() if hasattr(val_logits, "detach") else val_logits)
    labels = np.asarray(val_labels.detach().cpu() if hasattr(val_labels, "detach") else val_labels).astype(np.int64)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"val_logits (N, K) and val_labels (N,) must match; got {logits.shape} and {labels.shape}")
    known = labels != -1
    if not known.any():
        raise ValueError("val_labels has no known sample (all -1): nothing to tune tau on")
    if labels[known].min() < 0 or labels[known].max() >= logits.shape[1]:
        raise ValueError(f"val_labels must be -1 or in [0, {logits.shape[1]}); "
                         f"got {labels[known].min()}..{labels[known].max()}")
    if len(taus) == 0:
        raise ValueError("taus is empty")
    table = {}
    for tau in taus:
        preds = logit_adjust(logits[known], train_counts, tau).argmax(axis=1)
        table[float(tau)] = _balanced_accuracy(preds, labels[known])
    best = max(table, key=lambda t: (table[t], -t))
    return best, table
