"""Input conversion shared by the metric functions (numpy arrays or torch tensors).

Every helper names the argument it checks in its error: complex values are a
``TypeError`` (their imaginary part would be dropped silently), NaN where a number is
required a ``ValueError``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np

__all__ = ["as_counts", "as_flags", "as_fraction", "as_labels", "as_scores", "as_threshold", "nan_mean"]


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor, any device
        value = value.detach().cpu()
        if value.is_complex():
            raise TypeError("complex")  # replaced by the caller's message (numpy cannot take every torch dtype)
        value = value.numpy()
    return np.asarray(value)


def _array(value: Any, name: str) -> np.ndarray:
    try:
        arr = _numpy(value)
    except TypeError:
        raise TypeError(f"{name} must be real, got a complex tensor") from None
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got {arr.dtype} (the imaginary part would be dropped)")
    return arr


def as_labels(value: Any, name: str) -> np.ndarray:
    """1-D ``int64`` array of class ids (``-1`` = unknown / rejected)."""
    arr = _array(value, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got {arr.dtype}")
    if arr.size and arr.min() < -1:
        raise ValueError(f"{name} must be >= -1 (-1 = unknown), got {arr.min()}")
    return arr.astype(np.int64, copy=False)


def as_scores(value: Any, name: str) -> np.ndarray:
    """1-D finite ``float64`` array."""
    arr = _array(value, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"{name} must be numeric, got {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_flags(value: Any, name: str, shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
    """1-D ``bool`` array from booleans or 0/1 numbers (of ``shape`` when given)."""
    arr = _array(value, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if arr.dtype != np.bool_:
        if arr.size and not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must hold booleans, got {arr.dtype}")
        if arr.size and not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name} must hold booleans (or 0/1), got other values")
    return arr.astype(bool, copy=False)


def as_counts(value: Any, name: str) -> np.ndarray:
    """1-D ``int64`` array of non-negative whole numbers (e.g. training images per class)."""
    arr = _array(value, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one count per class), got shape {arr.shape}")
    if not arr.size:
        return arr.astype(np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must hold whole numbers, got {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold whole numbers, got a non-integer or NaN value")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got {arr.min()}")
    return arr.astype(np.int64, copy=False)


def as_threshold(value: Any, name: str) -> float:
    """A real number that is not NaN (``±inf`` is allowed: accept or reject everything)."""
    if isinstance(value, (complex, np.complexfloating)) or (
            hasattr(value, "is_complex") and callable(value.is_complex) and value.is_complex()):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    out = float(value)
    if math.isnan(out):
        raise ValueError(f"{name} is NaN; give a number")
    return out


def as_fraction(value: Any, name: str) -> float:
    """A number in ``(0, 1]`` (e.g. a TPR)."""
    out = as_threshold(value, name)
    if not 0.0 < out <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return out


def nan_mean(values) -> float:
    """Mean of a sequence, ``nan`` when it is empty (without numpy's RuntimeWarning)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()) if arr.size else float("nan")
