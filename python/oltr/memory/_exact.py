"""Exact re-ranking shared by the torch and faiss backends.

Fast searches score candidates with the GEMM form ``‖x‖² + ‖c‖² − 2 x·c``, which cancels
catastrophically when a query lies near a centroid (see PERF_BASELINE.md, "Precision trap").
The backends therefore keep every candidate whose approximate score could still be among the
top k (``gemm_tolerance`` bounds the error), recompute those candidates' distances exactly as
``‖x − c‖₂`` (the official formula), and pick the k best with ties broken by the lower
centroid index (``select_topk``).

All functions take and return torch tensors; numpy callers wrap with ``torch.from_numpy``
(no copy).
"""
from __future__ import annotations

import torch

__all__ = ["gemm_tolerance", "pair_distances", "select_topk"]

_UNIT_ROUNDOFF = 2.0**-24  # float32
_PAIR_BLOCK_BYTES = 32 << 20  # temporary (n_pairs, D) difference block


def gemm_tolerance(x_norm_sq: torch.Tensor, max_c_norm_sq: float, dim: int) -> torch.Tensor:
    """Bound on |GEMM-form score − exact squared distance| for each query, float32 (B,).

    Uses the worst-case summation bound γ_D = D·u / (1 − D·u) (any summation order, FMA or
    not) on ``(‖x‖ + max‖c‖)²``, plus a few ulps of slack for the final additions.
    """
    n = dim + 4
    gamma = n * _UNIT_ROUNDOFF / (1.0 - n * _UNIT_ROUNDOFF)
    scale = (x_norm_sq.sqrt() + max_c_norm_sq**0.5) ** 2
    return gamma * scale


def pair_distances(
    x: torch.Tensor, centroids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """Exact L2 distances ``‖x[rows[i]] − centroids[cols[i]]‖₂`` for each pair i.

    x: float32 (B, D); centroids: float32 (K, D); rows, cols: int64 (n,). Returns float32 (n,).
    Differentiable with respect to x and centroids (the official ``torch.norm`` formula);
    computed in blocks so the temporary (n, D) difference never exceeds a fixed size.
    """
    dim = x.shape[1]
    block = max(1, _PAIR_BLOCK_BYTES // (4 * max(dim, 1)))

    def distances(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # index_select, not x[r]: advanced indexing costs ~25x more on small inputs
        diff = x.index_select(0, r) - centroids.index_select(0, c)
        return torch.linalg.vector_norm(diff, dim=1)

    if rows.numel() <= block:
        return distances(rows, cols)
    return torch.cat([distances(rows[s : s + block], cols[s : s + block])
                      for s in range(0, rows.numel(), block)])


def select_topk(
    rows: torch.Tensor, cols: torch.Tensor, dist: torch.Tensor, num_rows: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest candidates of every row, ascending, equal distances by lower index.

    rows, cols: int64 (n,) candidate pairs, ordered by (row, col) ascending; dist: float32 (n,)
    their exact distances. Every row must have at least k candidates. Returns
    ``(dist (num_rows, k) float32, idx (num_rows, k) int64)``; dist keeps the autograd graph.
    """
    with torch.no_grad():
        # pairs are (row, col)-sorted; two stable sorts give (row, dist, col) order
        by_dist = torch.sort(dist.detach(), stable=True).indices
        by_row = torch.sort(rows.index_select(0, by_dist), stable=True).indices
        order = by_dist.index_select(0, by_row)
        counts = torch.bincount(rows, minlength=num_rows)
        if bool((counts < k).any()):
            raise RuntimeError("select_topk: a row has fewer than k candidates")
        starts = torch.cumsum(counts, 0) - counts
        slots = (starts[:, None] + torch.arange(k, device=rows.device)).reshape(-1)
        take = order.index_select(0, slots)
    return (dist.index_select(0, take).reshape(num_rows, k),
            cols.index_select(0, take).reshape(num_rows, k))
