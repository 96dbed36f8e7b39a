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

from typing import Optional

import numpy as np
import torch

from ._exact import gemm_tolerance, pair_distances, select_topk
from ._torch import TorchBackend
from .faiss_options import FaissOptions
from .threads import apply_thread_count_to_faiss

__all__ = ["FaissBackend"]


def _default_nlist(num_classes: int) -> int:
    """round(4·√K), capped at K / 39 so k-means has the 39 points per cell FAISS wants."""
    return max(1, min(round(4 * num_classes**0.5), num_classes // 39))


def _build_index(centroids: np.ndarray, options: FaissOptions):
    import faiss

    apply_thread_count_to_faiss(faiss)
    num_classes, dim = centroids.shape
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


class FaissBackend:
    """k-nearest centroids through FAISS, exact distances on the returned candidates.

    centroids: float32 (K, D) C-contiguous numpy array (kept by reference for re-ranking).
    """

    name = "faiss"
    array_kind = "numpy"
    require_cpu = True

    def __init__(self, centroids: np.ndarray, options: Optional[FaissOptions] = None) -> None:
        self.options = options if options is not None else FaissOptions()
        self._centroids = centroids
        self._index = _build_index(centroids, self.options)
        c = torch.from_numpy(centroids)
        self._max_c_norm_sq = float((c * c).sum(dim=1).max())
        self._exact_fallback = TorchBackend(c)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """x: float32 (B, D) C-contiguous, B >= 1 -> (dist float32 (B, k), idx int64 (B, k))."""
        num_classes = self._centroids.shape[0]
        fetch = min(num_classes, k + self.options.extra_candidates)
        approx_sq, cand = self._index.search(x, fetch)
        xt = torch.from_numpy(x)
        redo = self._rows_to_redo(xt, approx_sq, cand, k, fetch, num_classes)
        if not redo.any():  # the usual case
            d_all, i_all = self._rerank(xt, cand, k)
            return d_all.numpy(), i_all.numpy()
        keep = ~redo
        dist = np.empty((x.shape[0], k), dtype=np.float32)
        idx = np.empty((x.shape[0], k), dtype=np.int64)
        if keep.any():
            d_keep, i_keep = self._rerank(xt[torch.from_numpy(keep)], cand[keep], k)
            dist[keep], idx[keep] = d_keep.numpy(), i_keep.numpy()
        if redo.any():
            d_redo, i_redo = self._exact_fallback.search(xt[torch.from_numpy(redo)], k)
            dist[redo], idx[redo] = d_redo.numpy(), i_redo.numpy()
        return dist, idx

    def _rows_to_redo(self, x, approx_sq, cand, k, fetch, num_classes) -> np.ndarray:
        """Rows that need the exact fallback: fewer than k valid candidates (FAISS pads with
        -1), or (flat index) a candidate list that may have cut a near-tie of the k-th."""
        redo = cand[:, k - 1] < 0
        if self.options.exact and fetch < num_classes:
            tol = gemm_tolerance((x * x).sum(dim=1), self._max_c_norm_sq, x.shape[1]).numpy()
            redo |= approx_sq[:, -1] <= approx_sq[:, k - 1] + 2.0 * tol
        return redo

    def _rerank(self, x: torch.Tensor, cand: np.ndarray, k: int):
        cand = np.sort(cand, axis=1)  # (row, col) order for select_topk; -1 first if any
        valid = cand >= 0
        rows, cols = np.nonzero(valid)
        rows_t = torch.from_numpy(rows.astype(np.int64))
        cols_t = torch.from_numpy(cand[rows, cols])
        with torch.no_grad():
            dist = pair_distances(x, torch.from_numpy(self._centroids), rows_t, cols_t)
            return select_topk(rows_t, cols_t, dist, x.shape[0], k)
