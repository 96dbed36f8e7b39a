"""Nearest class centroids, exact L2 distances and reachability (OLTR's memory).

Public API::

    index = CentroidIndex(centroids, backend="auto")      # (K, D) numpy or torch
    index = CentroidIndex(centroids, backend="rust", kernel="auto")  # force a core engine
    available_kernels()                                    # engines this CPU runs
    dist, idx = index.search(x, k=1)                       # (B, k) float32 / int64
    reach = index.reachability(x)                          # (B,) float32, scale REACHABILITY_SCALE = 10
    nearest_centroids(x, centroids, k=1, backend="auto")   # -> (dist, idx)
    reachability(x, centroids, backend="auto")             # -> (B,)
    set_num_threads(n); get_num_threads()               # 1 <= n <= MAX_NUM_THREADS

Backends: "rust" (``oltr._core``), "faiss" (:class:`FaissOptions` for HNSW / IVF) and
"torch" (reference, autograd). See :mod:`oltr.memory.index`.
"""
from __future__ import annotations

from ._rust import available_kernels
from ._validation import BACKEND_NAMES
from .faiss_options import FaissOptions
from .functional import nearest_centroids, reachability
from .index import REACHABILITY_EPS, REACHABILITY_SCALE, CentroidIndex
from .threads import MAX_NUM_THREADS, get_num_threads, set_num_threads

__all__ = [
    "BACKEND_NAMES",
    "MAX_NUM_THREADS",
    "REACHABILITY_EPS",
    "REACHABILITY_SCALE",
    "CentroidIndex",
    "FaissOptions",
    "available_kernels",
    "get_num_threads",
    "nearest_centroids",
    "reachability",
    "set_num_threads",
]
