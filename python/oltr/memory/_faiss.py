"""FAISS backend: exact ``IndexFlatL2`` by default, approximate HNSW or IVF on request.

FAISS scores with float32 arithmetic (the GEMM form from 20 queries on), so its distances are
not exact near a centroid. This backend asks FAISS for ``k + extra_candidates`` neighbours,
recomputes their distances exactly (:mod:`._exact`) and re-ranks them with ties broken by
the lower index. With the exact flat index, a row whose candidate list could have cut a
near-tie (its last candidate scores within the GEMM error bound of its k-th) is answered by
the exact torch path instead, so results equal the exact top k. With HNSW or IVF the
candidates are approximate by design: returned distances are exact for the returned indices,
and recall is what the index reaches (``bench.py`` reports recall@1 against exact).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

from ._exact import SAFE_SCALE, gemm_tolerance, pair_distances, select_topk, squared_norms
from ._torch import TorchBackend
from .faiss_options import FaissOptions
from .threads import apply_thread_count_to_faiss

__all__ = ["FaissBackend"]


def _default_nlist(num_classes: int) -> int:
    """round(4·√K), capped at K / 39 so k-means has the 39 points per cell FAISS wants."""
    return max(1, min(round(4 * num_classes**0.5), num_classes // 39))


def _build_index(centroids: np.ndarray, options: FaissOptions) -> Any:
    import faiss

    apply_thread_count_to_faiss(faiss)
    num_classes, dim = centroids.shape
    index: Any  # IndexFlatL2, IndexHNSWFlat or IndexIVFFlat
    if options.index == "flat":
        index = faiss.IndexFlatL2(dim)
    elif options.index == "hnsw":
        index = faiss.IndexHNSWFlat(dim, options.hnsw_m)
        index.hnsw.efConstruction = options.ef_construction
        index.hnsw.efSearch = options.ef_search
    else:
        nlist = min(options.nlist or _default_nlist(num_classes), num_classes)
        quantizer = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist)
        index.train(centroids)
        index.nprobe = min(options.nprobe, nlist)
    index.add(centroids)
    return index


def _rescale_factor(max_c_norm_sq: float) -> float:
    """Power of two that brings the largest centroid norm into [0.5, 1) when it lies outside
    [1e-10, 1e10] (exact: only the exponents change), else 1 (no copy of the queries)."""
    if max_c_norm_sq == 0.0 or 1e-20 <= max_c_norm_sq <= 1e20:
        return 1.0
    return 2.0 ** -math.frexp(max_c_norm_sq**0.5)[1]


def _scaled(a: np.ndarray, factor: float) -> np.ndarray:
    """float32 ``a · factor`` (a power of two, possibly beyond float32's range itself); values
    that overflow become inf (their rows leave the safe range and are answered exactly)."""
    with np.errstate(over="ignore"):
        return (a.astype(np.float64) * factor).astype(np.float32)


class FaissBackend:
    """k-nearest centroids through FAISS, exact distances on the returned candidates.

    centroids: float32 (K, D) C-contiguous numpy array, owned by the backend (the index
    passes its snapshot).

    FAISS scores in float32. Centroids of extreme norm are given to FAISS (and queries with
    them) multiplied by a power of two (:func:`_rescale_factor`), which changes no ranking;
    a query whose scaled ``(‖x‖ + max‖c‖)²`` still leaves float32's safe range
    (``SAFE_SCALE``) is answered by the exact torch path, like a near-tie.
    """

    name = "faiss"
    array_kind = "numpy"
    require_cpu = True

    def __init__(self, centroids: np.ndarray, options: Optional[FaissOptions] = None) -> None:
        self.options = options if options is not None else FaissOptions()
        self._centroids = centroids
        c = torch.from_numpy(centroids)
        self._exact_fallback = TorchBackend(c)
        self._scale = _rescale_factor(self._exact_fallback.max_c_norm_sq)
        scaled = centroids if self._scale == 1.0 else _scaled(centroids, self._scale)
        self._max_c_norm_sq = self._exact_fallback.max_c_norm_sq * self._scale**2
        self._index = _build_index(scaled, self.options)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """x: float32 (B, D) C-contiguous, B >= 1 -> (dist float32 (B, k), idx int64 (B, k))."""
        num_classes = self._centroids.shape[0]
        fetch = min(num_classes, k + self.options.extra_candidates)
        scaled = x if self._scale == 1.0 else _scaled(x, self._scale)
        approx_sq, cand = self._index.search(scaled, fetch)
        xt = torch.from_numpy(x)
        redo = self._rows_to_redo(torch.from_numpy(scaled), approx_sq, cand, k, fetch, num_classes)
        if not redo.any():  # the usual case
            d_all, i_all = self._rerank(xt, cand, k)
            return d_all.numpy(), i_all.numpy()
        keep = ~redo
        dist = np.empty((x.shape[0], k), dtype=np.float32)
        idx = np.empty((x.shape[0], k), dtype=np.int64)
        if keep.any():
            d_keep, i_keep = self._rerank(xt[torch.from_numpy(keep)], cand[keep], k)
            dist[keep], idx[keep] = d_keep.numpy(), i_keep.numpy()
        d_redo, i_redo = self._exact_fallback.search(xt[torch.from_numpy(redo)], k)
        dist[redo], idx[redo] = d_redo.numpy(), i_redo.numpy()
        return dist, idx

    def _rows_to_redo(self, x, approx_sq, cand, k, fetch, num_classes) -> np.ndarray:
        """Rows that need the exact fallback: fewer than k valid candidates (FAISS pads with
        -1); scaled magnitudes outside float32's safe range (FAISS's scores overflow or
        underflow); or (flat index) a candidate list that may have cut a near-tie of the k-th.
        x: the scaled queries given to FAISS."""
        redo = cand[:, k - 1] < 0
        x_norm_sq = squared_norms(x)
        low, high = SAFE_SCALE
        scale = ((x_norm_sq.sqrt() + self._max_c_norm_sq**0.5) ** 2).numpy()
        redo |= (scale < low) | (scale > high)
        if self.options.exact and fetch < num_classes:
            tol = gemm_tolerance(x_norm_sq, self._max_c_norm_sq, x.shape[1], torch.float32).numpy()
            with np.errstate(invalid="ignore", over="ignore"):  # redone rows may hold inf
                redo |= approx_sq[:, -1].astype(np.float64) <= approx_sq[:, k - 1] + 2.0 * tol
        return redo

    def _rerank(self, x: torch.Tensor, cand: np.ndarray, k: int):
        cand = np.sort(cand, axis=1)  # (row, col) order for select_topk; -1 first if any
        valid = cand >= 0
        rows, cols = np.nonzero(valid)
        rows_t = torch.from_numpy(rows.astype(np.int64))
        cols_t = torch.from_numpy(cand[rows, cols])
        with torch.no_grad():
            dist = pair_distances(x, torch.from_numpy(self._centroids), rows_t, cols_t)
            d, i = select_topk(rows_t, cols_t, dist, x.shape[0], k)
        return d.float(), i
