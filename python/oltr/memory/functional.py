"""Functional forms of :class:`~oltr.memory.index.CentroidIndex` (one-off searches).

Each call builds an index over ``centroids``, so prefer a ``CentroidIndex`` when the same
centroids answer many batches. With ``backend="auto"``, a torch input that requires grad
(with grad enabled) or lives off the CPU goes to the torch backend, the only one that
returns gradients and runs on any device; otherwise "auto" means the same as for the index.
"""
from __future__ import annotations

from typing import Any

from ._validation import check_backend_name, is_torch_tensor
from .index import REACHABILITY_EPS, REACHABILITY_SCALE, CentroidIndex, _requires_grad

__all__ = ["nearest_centroids", "reachability"]


def _functional_backend(backend: str, x: Any, centroids: Any) -> str:
    backend = check_backend_name(backend)
    if backend != "auto":
        return backend
    for value in (x, centroids):
        if _requires_grad(value) or (is_torch_tensor(value) and value.device.type != "cpu"):
            return "torch"
    return backend


def nearest_centroids(x: Any, centroids: Any, k: int = 1, backend: str = "auto", *,
                      faiss_options: Any = None):
    """The k nearest centroids of each query: ``(dist float32 (B, k), idx int64 (B, k))``.

    x: (B, D); centroids: (K, D). Exact L2 distances, ascending, ties by lower index. With
    ``backend="torch"`` the distances carry the gradient of ``‖x − c‖₂`` (the official
    formula) with respect to x (and centroids, if they require grad).
    """
    name = _functional_backend(backend, x, centroids)
    return CentroidIndex._for_one_call(centroids, name, faiss_options).search(x, k)


def reachability(x: Any, centroids: Any, scale: float = REACHABILITY_SCALE, backend: str = "auto", *,
                 eps: float = REACHABILITY_EPS, faiss_options: Any = None):
    """Reachability ``scale / max(d_min, eps)`` of each query, float32 (B,)."""
    name = _functional_backend(backend, x, centroids)
    return CentroidIndex._for_one_call(centroids, name, faiss_options).reachability(
        x, scale=scale, eps=eps
    )
