"""Input checks and conversions shared by every memory backend.

Every public entry point of :mod:`oltr.memory` normalises its arguments here, once, so the
backends receive arrays they can use directly and the error messages are the same whichever
backend runs. Wrong types raise :class:`TypeError`; wrong shapes or values raise
:class:`ValueError`; each message names the argument.

Conversions are done at most once: C-contiguous float32 queries (numpy, or a CPU float32 torch
tensor viewing one) reach a numpy backend without any copy. Centroids are copied once, into
the snapshot the index owns (the Rust core makes its own packed copy instead).
"""
from __future__ import annotations

import math
import operator
import sys
from typing import Any, Literal, Optional

import numpy as np

__all__ = [
    "ArrayKind",
    "BACKEND_NAMES",
    "check_backend_name",
    "check_eps",
    "check_int",
    "check_k",
    "check_scale",
    "dtype_error",
    "is_ready_queries",
    "is_torch_tensor",
    "prepare_centroids",
    "prepare_queries",
    "wrap_output",
]

ArrayKind = Literal["numpy", "torch"]

#: backend names accepted by ``CentroidIndex`` and the functional API.
BACKEND_NAMES = ("auto", "rust", "faiss", "torch")

_FLOAT_DTYPES = ("float32", "float64")
_FLOAT_CHARS = "fd"  # numpy dtype.char of float32, float64
_F32_MAX = float(np.finfo(np.float32).max)


def is_torch_tensor(value: Any) -> bool:
    """True when ``value`` is a ``torch.Tensor`` (without importing torch if it is not loaded)."""
    torch = _loaded_torch()
    return torch is not None and isinstance(value, torch.Tensor)


def _loaded_torch():
    return sys.modules.get("torch")


def check_backend_name(backend: Any) -> str:
    """Return ``backend`` if it is one of :data:`BACKEND_NAMES`, else raise ``ValueError``."""
    if not isinstance(backend, str) or backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {backend!r}")
    return backend


def check_int(value: Any, name: str, minimum: Optional[int] = None) -> int:
    """Return ``value`` as an int (>= ``minimum`` if given); TypeError for bool, float, ..."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_k(k: Any, num_classes: int) -> int:
    """Return ``k`` as an int with ``1 <= k <= num_classes``."""
    k = check_int(k, "k")
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must satisfy 1 <= k <= K = {num_classes}, got k={k}")
    return k


def _check_positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def check_scale(scale: Any) -> float:
    """Return ``scale`` as a finite positive float."""
    return _check_positive_float(scale, "scale")


def check_eps(eps: Any, scale: float) -> float:
    """Return ``eps`` as a finite positive float such that ``scale / eps`` fits in float32."""
    eps = _check_positive_float(eps, "eps")
    if scale / eps > _F32_MAX:
        raise ValueError(
            f"eps={eps} is too small for scale={scale}: scale / eps overflows float32"
        )
    return eps


def _check_matrix_shape(shape: tuple[int, ...], name: str, dim: int | None) -> None:
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D ({'B' if name == 'x' else 'K'}, D), got shape {tuple(shape)}")
    if dim is not None and shape[1] != dim:
        raise ValueError(f"{name} has dimension D={shape[1]}, but the centroids have D={dim}")


def dtype_error(name: str, dtype: Any) -> TypeError:
    """The TypeError for a non-float32/float64 ``dtype`` of argument ``name`` (complex named as
    such: its imaginary part would otherwise be dropped silently)."""
    text = str(dtype).removeprefix("torch.")
    if text.startswith("complex"):
        return TypeError(
            f"{name} must be real, got {text} (the imaginary part would be dropped; pass its "
            ".real or abs() explicitly)"
        )
    return TypeError(f"{name} must be float32 or float64, got dtype {dtype}")


def _as_numpy_float(value: Any, name: str) -> np.ndarray:
    """numpy array (or array-like) as an ndarray, checking that it is float32 or float64."""
    array = np.asarray(value)
    if array.dtype.char not in _FLOAT_CHARS:
        raise dtype_error(name, array.dtype)
    return array


def _to_contiguous(array: np.ndarray, dtype: str, copy: bool) -> np.ndarray:
    # float64 values beyond float32's range become inf here; _check_finite reports them
    with np.errstate(over="ignore", invalid="ignore"):
        if copy:
            return np.array(array, dtype=dtype, order="C", copy=True)
        return np.ascontiguousarray(array, dtype=dtype)


def _torch_float_tensor(value: Any, name: str, require_cpu: bool):
    if str(value.dtype).removeprefix("torch.") not in _FLOAT_DTYPES:
        raise dtype_error(name, value.dtype)
    if require_cpu and value.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor for this backend, got device {value.device}")
    return value


def _check_finite(array: Any, name: str) -> None:
    if not isinstance(array, np.ndarray):
        torch = _loaded_torch()
        with torch.no_grad():
            finite = bool(torch.isfinite(array).all())
    else:
        finite = bool(np.isfinite(array).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or Inf (after conversion to {array.dtype})")


def _convert(value: Any, name: str, kind: ArrayKind, require_cpu: bool, is_torch: bool,
             dtype: str = "float32", copy: bool = False):
    """Convert to ``dtype`` of the given kind, once; keep the autograd graph for torch->torch.

    ``copy=True`` guarantees the result shares no memory with ``value`` (a snapshot); a
    torch->torch snapshot is a ``clone``, which autograd differentiates like the identity.
    """
    if is_torch:
        tensor = _torch_float_tensor(value, name, require_cpu=require_cpu or kind == "numpy")
        if kind == "torch":
            converted = tensor.to(dtype=getattr(_loaded_torch(), dtype))
            return converted.clone() if copy and converted is tensor else converted
        # a float32 CPU tensor with unit-stride rows becomes a view, not a copy
        return _to_contiguous(tensor.detach().numpy(), dtype, copy)
    array = _to_contiguous(_as_numpy_float(value, name), dtype, copy)
    if kind == "torch":
        import torch

        return torch.from_numpy(array)
    return array


def prepare_centroids(centroids: Any, kind: ArrayKind, *, require_cpu: bool = True,
                      snapshot: bool = True, dtype: str = "float32"):
    """Validate centroids (K, D) and convert them to ``dtype`` (float32) of ``kind``.

    Returns a C-contiguous ``np.ndarray`` or a ``torch.Tensor`` on the centroids' device
    (autograd graph kept). With ``snapshot`` (the default) the result never shares memory
    with ``centroids``, so later writes to the caller's array cannot reach an index built on
    it. ``dtype="float64"`` is for :mod:`oltr.nn`'s float64 path only. Raises ``ValueError``
    for a wrong ndim, K = 0, D = 0 or non-finite values, ``TypeError`` for a wrong type or
    dtype (complex included).
    """
    shape = tuple(centroids.shape) if hasattr(centroids, "shape") else np.shape(centroids)
    _check_matrix_shape(shape, "centroids", None)
    if shape[0] == 0:
        raise ValueError("centroids is empty: need at least one centroid (K >= 1)")
    if shape[1] == 0:
        raise ValueError("centroids has dimension D=0: need D >= 1")
    converted = _convert(centroids, "centroids", kind, require_cpu, is_torch_tensor(centroids),
                         dtype, copy=snapshot)
    _check_finite(converted, "centroids")
    return converted


def is_ready_queries(x: Any, dim: int) -> bool:
    """True when x is already what a numpy backend takes: a (B, dim) float32 C-contiguous
    numpy array (no conversion or copy needed; finiteness not checked here)."""
    return (type(x) is np.ndarray and x.ndim == 2 and x.dtype.char == "f"
            and x.flags.c_contiguous and x.shape[1] == dim)


def prepare_queries(x: Any, dim: int, kind: ArrayKind, *, require_cpu: bool = True,
                    dtype: str = "float32"):
    """Validate queries (B, D) against the centroids' D and convert to ``dtype`` (float32)
    of ``kind`` (no copy when they already are).

    Returns ``(converted, as_torch)`` where ``as_torch`` says whether the caller passed a torch
    tensor (results are then returned as torch tensors). B = 0 is allowed.
    """
    if kind == "numpy" and dtype == "float32" and is_ready_queries(x, dim):
        _check_finite(x, "x")  # fast path: already what the backend takes
        return x, False
    as_torch = is_torch_tensor(x)
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    _check_matrix_shape(shape, "x", dim)
    converted = _convert(x, "x", kind, require_cpu, as_torch, dtype)
    _check_finite(converted, "x")
    return converted, as_torch


def wrap_output(value: Any, as_torch: bool):
    """Return a backend result as a torch tensor (``as_torch``) or a numpy array."""
    if isinstance(value, np.ndarray):
        return _loaded_torch().from_numpy(value) if as_torch else value
    return value if as_torch else value.detach().cpu().numpy()
