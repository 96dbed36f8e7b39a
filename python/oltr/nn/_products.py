"""Matrix products of the inference heads, on the Rust core's batch-invariant ``matmul``.

At CPU float32 inference the cosine and meta-embedding heads compute their products with
:func:`matmul` (``oltr._core.matmul``) on zero-copy numpy views of the tensors, and their
elementwise steps with numpy. The core computes each entry of ``a @ b`` as one chain of fused
multiply-adds over the inner index in order, so an entry's bits depend on its row of ``a`` and
its column of ``b`` only: a row's result is the same in any batch (size or position), on any
thread count and with any of the core's float32 kernels. The core splits a product over its
own threads (:func:`oltr.memory.set_num_threads`, work stealing: a thread stalled by another
process does not hold the call back), never over the inner index, and releases the GIL.

:func:`available` says whether this path can run: every tensor on the CPU in float32, the
Rust core importable, and :data:`enabled` true (tests switch it off to compare with the
torch path). Otherwise the heads run their torch inference path (same formulas, torch
products).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from oltr.nn._nearest import rust_core_available

__all__ = ["available", "enabled", "matmul", "view"]

#: Switch for tests and diagnostics: False sends every head call to the torch path.
enabled = True


def available(*tensors: Tensor) -> bool:
    """Whether the heads' core path computes with ``tensors``: all float32 on the CPU, the
    Rust core importable, :data:`enabled`."""
    if not enabled:
        return False
    for t in tensors:
        if t.dtype is not torch.float32 or not t.is_cpu:
            return False
    return rust_core_available()


def view(tensor: Tensor) -> np.ndarray:
    """``tensor`` as a numpy array sharing its memory (any strides; no autograd)."""
    return tensor.detach().numpy()


def matmul(a: np.ndarray, b: np.ndarray, bias: Optional[np.ndarray] = None) -> np.ndarray:
    """``a @ b`` (``+ bias``) on the core: ``a`` (M, K), ``b`` (K, N), ``bias`` (N,), all
    float32 -> a new (M, N) float32 array. Rows may be strided (views of wider buffers); an
    operand whose last axis is strided or whose rows overlap (``expand``) is copied first."""
    global _core_matmul
    if _core_matmul is None:
        from oltr.memory._rust import load_core

        _core_matmul = load_core().matmul
    out = np.empty((a.shape[0], b.shape[1]), np.float32)
    _core_matmul(_core_layout(a), _core_layout(b), out, None if bias is None else _core_layout(bias))
    return out


_core_matmul: Any = None  # oltr._core.matmul, once loaded


def _core_layout(array: np.ndarray) -> np.ndarray:
    """``array`` as the core takes it: unit stride along the last axis and rows that do not
    overlap (an ``expand``-ed tensor has row stride 0); a copy only when it is not."""
    if array.ndim and array.shape[-1] > 1 and array.strides[-1] != array.itemsize:
        return np.ascontiguousarray(array)
    if array.ndim == 2 and array.shape[0] > 1 and array.strides[0] < array.shape[1] * array.itemsize:
        return np.ascontiguousarray(array)
    return array
