"""The inference heads on the Rust core: batch-invariant products and elementwise steps.

At CPU float32 inference the meta-embedding head computes its formulas with
:func:`meta_embedding` (``oltr._core.meta_embedding``: hallucinator scores, softmax read-out
of the memory, selector, reachability, meta-embedding, in one call) and the cosine classifier
its logits with :func:`cosine_logits`, on zero-copy numpy views of the tensors. The core
computes each entry of a product as one chain of fused multiply-adds over the inner index in
order (``oltr._core.matmul``) and each elementwise step row by row with the same IEEE
operations on every CPU, so a row's results depend on that row only: the same bits in any
batch (size or position), on any thread count and with any of the core's float32 kernels.
The core splits a product over its own threads (:func:`oltr.memory.set_num_threads`, work
stealing: a thread stalled by another process does not hold the call back), never over the
inner index, and releases the GIL.

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

__all__ = ["available", "cosine_logits", "enabled", "meta_embedding", "view"]

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


def meta_embedding(x: np.ndarray, hallucinator_t: np.ndarray, hallucinator_bias: np.ndarray,
                   centroids: np.ndarray, selector_t: np.ndarray, selector_bias: np.ndarray,
                   nearest_distance: Optional[np.ndarray], reach_scale: float,
                   eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """``(memory, selector, infused, meta (B, D), reachability (B,) or None)`` float32 of ``x``
    (B, D), the four (B, D) arrays views of one (4, B, D) array: the meta-embedding head's
    formulas (:class:`oltr.nn.MetaEmbeddingClassifier`) from
    its transposed weights (``hallucinator_t`` (D, K), ``selector_t`` (D, D)), biases and
    ``centroids`` (K, D). ``nearest_distance`` (B,): each row's nearest-centroid distance, for
    ``reach = reach_scale / max(d, eps)`` and ``meta = reach * (x + infused)``; None: no
    reachability, ``meta = x + infused``."""
    arrays = x, hallucinator_t, hallucinator_bias, centroids, selector_t, selector_bias
    distance = None if nearest_distance is None else _core_layout(nearest_distance)
    return _core().meta_embedding(*(_core_layout(a) for a in arrays), distance, reach_scale=reach_scale,
                                  eps=eps)


def cosine_logits(v: np.ndarray, unit_weight_t: np.ndarray, logit_scale: float, squash: str) -> np.ndarray:
    """The cosine classifier's logits (B, K) float32 of ``v`` (B, D): each row times
    ``logit_scale / (1 + ||v||)`` (``squash="code"``) or ``logit_scale * ||v|| / (1 + ||v||^2)``
    (``"paper"``), times ``unit_weight_t`` (D, K), the unit weight rows transposed."""
    return _core().cosine_logits(_core_layout(v), _core_layout(unit_weight_t), logit_scale, squash=squash)


_core_module: Any = None  # oltr._core, once loaded


def _core() -> Any:
    global _core_module
    if _core_module is None:
        from oltr.memory._rust import load_core

        _core_module = load_core()
    return _core_module


def _core_layout(array: np.ndarray) -> np.ndarray:
    """``array`` as the core takes it: unit stride along the last axis and rows that do not
    overlap (an ``expand``-ed tensor has row stride 0); a copy only when it is not."""
    if array.ndim and array.shape[-1] > 1 and array.strides[-1] != array.itemsize:
        return np.ascontiguousarray(array)
    if array.ndim == 2 and array.shape[0] > 1 and array.strides[0] < array.shape[1] * array.itemsize:
        return np.ascontiguousarray(array)
    return array
