"""Input conversion shared by the metric functions (numpy arrays or torch tensors)."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_labels", "as_scores", "nan_mean"]


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor, any device
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def as_labels(value: Any, name: str) -> np.ndarray:
    """1-D ``int64`` array of class ids (``-1`` = unknown / rejected)."""
    arr = _numpy(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got {arr.dtype}")
    if arr.size and arr.min() < -1:
        raise ValueError(f"{name} must be >= -1 (-1 = unknown), got {arr.min()}")
    return arr.astype(np.int64, copy=False)


def as_scores(value: Any, name: str) -> np.ndarray:
    """1-D finite ``float64`` array."""
    arr = _numpy(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def nan_mean(values) -> float:
    """Mean of a sequence, ``nan`` when it is empty (without numpy's RuntimeWarning)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()) if arr.size else float("nan")
