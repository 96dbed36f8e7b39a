"""Torch backend: the reference, the official formula, usable with autograd.

The official code computes ``‖x_b − c_k‖₂`` for all pairs through an expanded (B, K, D)
tensor and sorts. This backend gives the same values and gradients without the (B, K, D)
tensor: for blocks of queries it scores all centroids with the GEMM form (one ``addmm``, a
(B_block, K) score block of at most ``_SCORE_BLOCK_BYTES``), keeps every centroid whose score
is within the GEMM error bound of the k-th best, and recomputes those candidates exactly with
the official ``torch.norm`` formula (:mod:`._exact`). The returned distances carry the
gradient of the exact distance when x (or the centroids) require grad.

Memory beyond the inputs: one score block (64 MiB, or one row when a row is larger), its
boolean mask, and the candidate pairs, which number about B_block·k unless many centroids
tie within the GEMM error bound (worst case all K of a row: 16 bytes of indices per pair);
exact distances are computed 32 MiB of differences at a time. With autograd on, the
differences of the candidate pairs are kept for the backward pass.
"""
from __future__ import annotations

import torch

from ._exact import gemm_tolerance, pair_distances, select_topk

__all__ = ["TorchBackend"]

_SCORE_BLOCK_BYTES = 64 << 20  # at most 64 MiB of (B_block, K) float32 scores at a time


class TorchBackend:
    """Exact k-nearest centroids with torch ops; any device, autograd-aware.

    centroids: float32 (K, D) tensor (may require grad; it is used as given, not copied).
    """

    name = "torch"
    array_kind = "torch"
    require_cpu = False

    def __init__(self, centroids: torch.Tensor) -> None:
        self._centroids = centroids
        with torch.no_grad():
            c = centroids.detach()
            self._c_norm_sq = (c * c).sum(dim=1)  # (K,)
            self._max_c_norm_sq = float(self._c_norm_sq.max())

    def search(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float32 (B, D), B >= 1 -> (dist float32 (B, k) ascending, idx int64 (B, k)).

        x is moved to the centroids' device if it is elsewhere; results live there too.
        """
        if x.device != self._centroids.device:
            x = x.to(self._centroids.device)
        num_classes = self._centroids.shape[0]
        block = max(1, _SCORE_BLOCK_BYTES // (4 * num_classes))
        if x.shape[0] <= block:
            return self._search_block(x, k)
        parts = [self._search_block(x[s : s + block], k) for s in range(0, x.shape[0], block)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _candidates(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, col) pairs, (row, col)-sorted, whose GEMM score may be among the top k."""
        with torch.no_grad():
            xd = x.detach()
            c = self._centroids.detach()
            # score = ‖c‖² − 2 x·c  (‖x‖² is constant per row)
            scores = torch.addmm(self._c_norm_sq, xd, c.T, beta=1.0, alpha=-2.0)
            if k == 1:
                kth = scores.min(dim=1).values
            else:
                kth = torch.topk(scores, k, dim=1, largest=False, sorted=True).values[:, -1]
            x_norm_sq = (xd * xd).sum(dim=1)
            tol = gemm_tolerance(x_norm_sq, self._max_c_norm_sq, x.shape[1])
            mask = scores <= (kth + 2.0 * tol)[:, None]
            rows, cols = mask.nonzero(as_tuple=True)
        return rows, cols

    def _search_block(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = self._candidates(x, k)
        dist = pair_distances(x, self._centroids, rows, cols)
        return select_topk(rows, cols, dist, x.shape[0], k)
