"""Exact re-ranking shared by the torch and faiss backends.

Fast searches score candidates with the GEMM form ``‖x‖² + ‖c‖² − 2 x·c``, which cancels
catastrophically when a query lies near a centroid (its error grows with ‖x‖² + ‖c‖², not
with the distance).
The backends therefore keep every candidate whose approximate score could still be among the
top k (``gemm_tolerance`` bounds the error), recompute those candidates' distances exactly as
``‖x − c‖₂`` (the official formula, evaluated in float64), and pick the k best with ties
broken by the lower centroid index (``select_topk``).

Magnitudes: float32 GEMM scores overflow when ``(‖x‖ + max‖c‖)²`` nears float32's maximum
and lose their relative error bound to underflow when it nears float32's smallest normal.
``scoring_dtype`` says when a float32 problem must be scored in float64 instead (as the Rust
core, which scans exactly above 1e30); float64 holds every product of float32 values exactly
in range, so a float32 problem is always answerable. Float64 problems (``oltr.nn``'s float64
path) must lie in :data:`FLOAT64_SAFE_ABS` (``check_float64_range``), else ``ValueError``.

All functions take and return torch tensors; numpy callers wrap with ``torch.from_numpy``
(no copy).
"""
from __future__ import annotations

import torch

__all__ = [
    "FLOAT64_SAFE_ABS",
    "SAFE_SCALE",
    "check_float64_range",
    "gemm_tolerance",
    "pair_distances",
    "scoring_dtype",
    "select_topk",
    "squared_norms",
    "threshold_in",
]

#: Half an ulp of 1 (unit roundoff) of each scoring dtype.
_UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}
#: Range of ``(‖x‖ + max‖c‖)²`` over which float32 GEMM-form scores neither overflow nor fall
#: below the normal range far enough to break ``gemm_tolerance`` (the upper bound is the Rust
#: core's exact-scan threshold).
SAFE_SCALE = (1e-30, 1e30)
#: Range of the largest |value| of a float64 problem (float64 scores stay in range).
FLOAT64_SAFE_ABS = (1e-120, 1e120)
# temporary (n_pairs, D) float64 differences: small blocks stay in cache and reuse memory
# (a 32 MiB block made the float64 path 3-4x slower than one of 4 MiB, from page faults)
_PAIR_BLOCK_BYTES = 4 << 20


def squared_norms(rows: torch.Tensor) -> torch.Tensor:
    """``‖rows[i]‖²`` summed in float64, float64 (n,); no gradient. Converts a bounded block
    of rows at a time, so no float64 copy of the whole matrix is made."""
    block = max(1, _PAIR_BLOCK_BYTES // (8 * max(rows.shape[1], 1)))
    with torch.no_grad():
        parts = [rows[s : s + block].detach().double().square().sum(dim=1)
                 for s in range(0, rows.shape[0], block)]
    if len(parts) == 1:
        return parts[0]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=rows.device)


def scoring_dtype(x_norm_sq: torch.Tensor, max_c_norm_sq: float, dtype: torch.dtype) -> torch.dtype:
    """The dtype in which to GEMM-score queries of squared norms ``x_norm_sq`` (float64 (B,)).

    ``dtype`` is the problem's dtype. Float32 problems are scored in float32 while every
    row's ``(‖x‖ + max‖c‖)²`` lies in :data:`SAFE_SCALE`, else in float64. Float64 problems
    are scored in float64 (their callers keep them in :data:`FLOAT64_SAFE_ABS`).
    """
    if dtype == torch.float64:
        return dtype
    c_norm = max_c_norm_sq**0.5
    x_min, x_max = (float(v) for v in torch.aminmax(x_norm_sq))
    low, high = SAFE_SCALE
    if low <= (x_min**0.5 + c_norm) ** 2 and (x_max**0.5 + c_norm) ** 2 <= high:
        return dtype
    return torch.float64


def check_float64_range(values: dict[str, torch.Tensor]) -> None:
    """``ValueError`` unless the largest |value| of every float64 tensor is 0 or within
    :data:`FLOAT64_SAFE_ABS`, where float64 scores and exact distances neither overflow nor
    underflow. ``values``: argument name -> tensor."""
    low, high = FLOAT64_SAFE_ABS
    for name, value in values.items():
        with torch.no_grad():
            largest = float(value.detach().abs().max()) if value.numel() else 0.0
        if largest > high or 0.0 < largest < low:
            raise ValueError(
                f"{name} is too {'large' if largest > high else 'small'} for float64 "
                f"nearest-centroid search: its largest |value| is {largest:.3g}, outside "
                f"[{low:g}, {high:g}] (squared distances would over- or underflow); rescale it"
            )


def gemm_tolerance(x_norm_sq: torch.Tensor, max_c_norm_sq: float, dim: int,
                   dtype: torch.dtype) -> torch.Tensor:
    """Bound on |GEMM-form score − exact squared distance| of each query, float64 (B,).

    x_norm_sq: float64 (B,). Uses the worst-case summation bound γ_D = D·u / (1 − D·u) of the
    scoring ``dtype`` (any summation order, FMA or not) on ``(‖x‖ + max‖c‖)²``, plus a few ulps
    of slack for the final additions. Valid where :func:`scoring_dtype` chose ``dtype``.
    """
    n = dim + 4
    u = _UNIT_ROUNDOFF[dtype]
    gamma = n * u / (1.0 - n * u)
    return gamma * (x_norm_sq.sqrt() + max_c_norm_sq**0.5) ** 2


def threshold_in(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """float64 ``value`` as ``dtype``, one ulp up when rounded (a candidate threshold never
    shrinks; one ulp more than needed only admits a candidate more, never loses one)."""
    if dtype == value.dtype:
        return value
    out = value.to(dtype)
    return torch.nextafter(out, out.new_full((), float("inf")))


def pair_distances(
    x: torch.Tensor, centroids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """Exact L2 distances ``‖x[rows[i]] − centroids[cols[i]]‖₂`` for each pair i, float64 (n,).

    x: float32/float64 (B, D); centroids: same dtype (K, D); rows, cols: int64 (n,). The
    differences, squares and sums are formed in float64, so float32 inputs of any finite
    magnitude (1e-45 .. 3e38) give their exact distance to float64 precision. Differentiable with
    respect to x and centroids (the official ``torch.norm`` formula); computed in blocks so the
    temporary (n, D) difference never exceeds a fixed size.
    """
    dim = x.shape[1]
    block = max(1, _PAIR_BLOCK_BYTES // (8 * max(dim, 1)))

    def distances(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # index_select, not x[r]: advanced indexing costs ~25x more on small inputs
        diff = x.index_select(0, r).double() - centroids.index_select(0, c)  # float64
        return torch.linalg.vector_norm(diff, dim=1)

    if rows.numel() <= block:
        return distances(rows, cols)
    return torch.cat([distances(rows[s : s + block], cols[s : s + block])
                      for s in range(0, rows.numel(), block)])


def select_topk(
    rows: torch.Tensor, cols: torch.Tensor, dist: torch.Tensor, num_rows: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest candidates of every row, ascending, equal distances by lower index.

    rows, cols: int64 (n,) candidate pairs, ordered by (row, col) ascending; dist: float64 (n,)
    their exact distances (ranked in float64, so distances that round to the same float32 keep
    their exact order). Every row must have at least k candidates. Returns
    ``(dist (num_rows, k) float64, idx (num_rows, k) int64)``; dist keeps the autograd graph.
    """
    with torch.no_grad():
        # pairs are (row, col)-sorted; two stable sorts give (row, dist, col) order
        by_dist = torch.sort(dist.detach(), stable=True).indices
        by_row = torch.sort(rows.index_select(0, by_dist), stable=True).indices
        order = by_dist.index_select(0, by_row)
        counts = torch.bincount(rows, minlength=num_rows)
        if bool((counts < k).any()):
            raise RuntimeError("select_topk: a row has fewer than k candidates (internal error)")
        starts = torch.cumsum(counts, 0) - counts
        slots = (starts[:, None] + torch.arange(k, device=rows.device)).reshape(-1)
        take = order.index_select(0, slots)
    return (dist.index_select(0, take).reshape(num_rows, k),
            cols.index_select(0, take).reshape(num_rows, k))
