"""Torch backend: the reference, the official formula, usable with autograd.

The official code computes ``‖x_b − c_k‖₂`` for all pairs through an expanded (B, K, D)
tensor and sorts. This backend gives the same values and gradients without the (B, K, D)
tensor: for blocks of queries it scores all centroids with the GEMM form (one ``addmm``, a
(B_block, K) score block of at most ``_SCORE_BLOCK_BYTES``), keeps every centroid whose score
is within the GEMM error bound of the k-th best, and recomputes those candidates exactly with
the official formula in float64 (:mod:`._exact`). The returned distances carry the gradient of
the exact distance when x (or the centroids) require grad.

Magnitudes: float32 problems whose ``(‖x‖ + max‖c‖)²`` leaves [1e-30, 1e30] are scored in
float64 (a float64 copy of the centroids for that call), so every finite float32 input gets its
exact answer; distances beyond float32's range come back as inf, as from the Rust core.

Memory beyond the inputs: one score block (64 MiB, or one row when a row is larger), its
boolean mask, and the candidate pairs, which number about B_block·k unless many centroids
tie within the GEMM error bound (worst case all K of a row: 16 bytes of indices per pair);
exact distances are computed 32 MiB of float64 differences at a time. With autograd on, the
differences of the candidate pairs are kept for the backward pass.
"""
from __future__ import annotations

from typing import Any

import torch

from ._exact import (
    check_float64_range,
    gemm_tolerance,
    pair_distances,
    scoring_dtype,
    select_topk,
    squared_norms,
    threshold_in,
)

__all__ = ["TorchBackend", "nearest_float64"]

_SCORE_BLOCK_BYTES = 64 << 20  # at most 64 MiB of (B_block, K) scores at a time


class TorchBackend:
    """Exact k-nearest centroids with torch ops; any device, autograd-aware.

    centroids: float32 (K, D) tensor (float64 for :func:`nearest_float64`), finite, owned by
    the backend (the index passes its snapshot); it may require grad, and gradients then flow
    through it to whatever it was cloned from. Results have the centroids' dtype.
    """

    name = "torch"
    array_kind = "torch"
    require_cpu = False

    def __init__(self, centroids: torch.Tensor) -> None:
        self._centroids = centroids
        self._c_norm_sq64 = squared_norms(centroids)  # float64 (K,)
        self._max_c_norm_sq = float(self._c_norm_sq64.max())
        # float32 norms only serve in-range problems (scoring_dtype), where they are finite
        with torch.no_grad():
            self._c_norm_sq = self._c_norm_sq64.to(centroids.dtype)

    @property
    def max_c_norm_sq(self) -> float:
        """The largest squared centroid norm, computed in float64."""
        return self._max_c_norm_sq

    def search(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, D) of the centroids' dtype, B >= 1, finite -> (dist (B, k) ascending, of the
        centroids' dtype; idx int64 (B, k)).

        x is moved to the centroids' device if it is elsewhere; results live there too.
        """
        if x.device != self._centroids.device:
            x = x.to(self._centroids.device)
        x_norm_sq = squared_norms(x)
        dtype = scoring_dtype(x_norm_sq, self._max_c_norm_sq, self._centroids.dtype)
        if dtype == self._centroids.dtype:
            c_scores, c_norm_sq = self._centroids.detach(), self._c_norm_sq
        else:  # extreme float32 magnitudes: score in float64 for this call
            c_scores, c_norm_sq = self._centroids.detach().double(), self._c_norm_sq64
        num_classes = self._centroids.shape[0]
        block = max(1, _SCORE_BLOCK_BYTES // (c_scores.element_size() * num_classes))
        parts = [
            self._search_block(x[s : s + block], x_norm_sq[s : s + block], k, c_scores, c_norm_sq)
            for s in range(0, x.shape[0], block)
        ]
        dist = parts[0][0] if len(parts) == 1 else torch.cat([p[0] for p in parts])
        idx = parts[0][1] if len(parts) == 1 else torch.cat([p[1] for p in parts])
        return dist.to(self._centroids.dtype), idx

    def _candidates(self, x: torch.Tensor, x_norm_sq: torch.Tensor, k: int,
                    c_scores: torch.Tensor, c_norm_sq: torch.Tensor):
        """(row, col) pairs, (row, col)-sorted, whose GEMM score may be among the top k."""
        with torch.no_grad():
            dtype = c_scores.dtype
            # score = ‖c‖² − 2 x·c  (‖x‖² is constant per row)
            scores = torch.addmm(c_norm_sq, x.detach().to(dtype), c_scores.T, beta=1.0, alpha=-2.0)
            if k == 1:
                kth = scores.min(dim=1).values
            else:
                kth = torch.topk(scores, k, dim=1, largest=False, sorted=True).values[:, -1]
            tol = gemm_tolerance(x_norm_sq, self._max_c_norm_sq, x.shape[1], dtype)
            limit = threshold_in(kth.double() + 2.0 * tol, dtype)
            rows, cols = (scores <= limit[:, None]).nonzero(as_tuple=True)
        return rows, cols

    def _search_block(self, x, x_norm_sq, k, c_scores, c_norm_sq):
        rows, cols = self._candidates(x, x_norm_sq, k, c_scores, c_norm_sq)
        dist = pair_distances(x, self._centroids, rows, cols)
        return select_topk(rows, cols, dist, x.shape[0], k)


def nearest_float64(x: Any, centroids: Any, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact k nearest centroids computed in float64: ``(dist float64 (B, k), idx int64)``.

    The float64 twin of ``nearest_centroids(x, centroids, k, backend="torch")`` for
    :mod:`oltr.nn`'s float64 models (the public API answers in float32). x: (B, D),
    centroids: (K, D), float32 or float64 tensors or arrays on one device; same checks and
    errors as the public API, plus ``ValueError`` when the largest |value| of x or of the
    centroids leaves [1e-120, 1e120] (``FLOAT64_SAFE_ABS``; all-zero is fine). The distances
    are differentiable with respect to x and the centroids.
    """
    from ._validation import check_k, prepare_centroids, prepare_queries

    c = prepare_centroids(centroids, "torch", require_cpu=False, snapshot=False, dtype="float64")
    k = check_k(k, c.shape[0])
    xp, _ = prepare_queries(x, c.shape[1], "torch", require_cpu=False, dtype="float64")
    check_float64_range({"x": xp, "centroids": c})
    if xp.shape[0] == 0:
        return (torch.zeros(0, k, dtype=torch.float64, device=c.device),
                torch.zeros(0, k, dtype=torch.int64, device=c.device))
    return TorchBackend(c).search(xp, k)
