"""Nearest centroid for the meta-embedding classifier: Rust core at inference, torch in training.

The classifier needs, per query row, the distance to (and index of) the nearest centroid.

* When autograd has to flow through the distance (grad enabled and ``x`` or the centroids
  require grad), or the tensors are not on the CPU, or the Rust core is not importable, the
  differentiable torch path runs.
* Otherwise (CPU inference) the Rust core (:class:`oltr.memory.CentroidIndex`, backend
  ``"rust"``) answers. Building an index copies the centroids, so it is cached while the
  centroids do not change: the same tensor object with the same version counter (in-place
  updates through autograd-visible ops such as ``copy_`` or an optimizer step bump it) reuses
  the index at no cost; any other tensor is compared by value with the snapshot the index was
  built from (O(K*D), far cheaper than a search), and the index is rebuilt when they differ.
  Writes through ``.data`` bypass the version counter; they are caught only when the tensor
  object passed differs, so call :meth:`NearestCentroid.clear` after such writes.
"""
from __future__ import annotations

import weakref
from typing import Optional

import torch
from torch import Tensor

__all__ = ["NearestCentroid", "torch_nearest", "BACKENDS"]

#: ``backend`` values accepted by :class:`NearestCentroid`.
BACKENDS = ("auto", "torch", "rust")

# Rows of the (rows, K) score matrix the torch path holds at once.
_SCORE_BUDGET = 1 << 24
# GEMM-form candidates re-ranked by their exact distance (guards against cancellation).
_RERANK = 4


def torch_nearest(x: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    """Exact nearest centroid, differentiable in ``x`` and ``centroids``.

    ``x`` (B, D), ``centroids`` (K, D) -> ``(dist (B,), idx (B,) int64)`` with
    ``dist = ||x_b - c_idx||_2`` computed exactly (not by the GEMM form, which cancels near a
    centroid). Candidates come from the GEMM form without grad; the best ``_RERANK`` are
    re-ranked exactly; equal distances go to the lower index. Its gradient equals the official
    ``sort(norm(x - c, dim=2))[:, 0]`` one (through the winning entry only).
    """
    num_rows, num_classes = x.shape[0], centroids.shape[0]
    num_candidates = min(_RERANK, num_classes)
    chunk = max(1, _SCORE_BUDGET // max(1, num_classes))
    with torch.no_grad():
        xd, cd = x.detach(), centroids.detach()
        c_sq = (cd * cd).sum(dim=1)
        parts = []
        for start in range(0, num_rows, chunk):
            xs = xd[start:start + chunk]
            scores = torch.addmm(c_sq.unsqueeze(0), xs, cd.t(), beta=1.0, alpha=-2.0)
            parts.append(scores.topk(num_candidates, dim=1, largest=False).indices)
        candidates = torch.cat(parts) if parts else torch.empty(0, num_candidates, dtype=torch.long, device=x.device)
        candidates = candidates.sort(dim=1).values  # ascending index: argmin picks the lower on ties
    diffs = x.unsqueeze(1) - centroids[candidates]  # (B, R, D)
    dists = diffs.norm(p=2, dim=2)
    best = dists.detach().argmin(dim=1, keepdim=True)
    return dists.gather(1, best).squeeze(1), candidates.gather(1, best).squeeze(1)


def _rust_index_class():
    try:
        from oltr.memory import CentroidIndex
    except ImportError:
        return None
    try:
        from oltr import _core  # noqa: F401  (the compiled extension)
    except ImportError:
        return None
    return CentroidIndex


class NearestCentroid:
    """Dispatches nearest-centroid queries (see the module docstring); caches the Rust index.

    ``backend``: ``"auto"`` (Rust at CPU inference, torch otherwise), ``"torch"`` (always the
    differentiable path) or ``"rust"`` (the Rust core whenever no gradient is needed; raises if
    the core is missing).
    """

    def __init__(self, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.clear()

    def clear(self) -> None:
        """Forget the cached index."""
        self._index = None
        self._snapshot: Optional[Tensor] = None
        self._source: Optional[weakref.ref] = None
        self._source_key: Optional[tuple] = None
        self.builds = 0  # how many indexes were built (for tests and diagnostics)

    def uses_rust(self, x: Tensor, centroids: Tensor) -> bool:
        """Whether ``__call__`` would answer with the Rust core for these tensors."""
        if self.backend == "torch":
            return False
        needs_grad = torch.is_grad_enabled() and x.requires_grad
        on_cpu = x.device.type == "cpu" and centroids.device.type == "cpu"
        if needs_grad or not on_cpu:
            return False
        if self.backend == "rust":
            if _rust_index_class() is None:
                raise RuntimeError("backend='rust' was asked for but the oltr Rust core is not importable")
            return True
        return _rust_index_class() is not None

    def __call__(self, x: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, D), ``centroids`` (K, D) -> ``(dist (B,) x.dtype, idx (B,) int64)``.

        The centroids are constants here (detached): the distance is differentiable in ``x``
        only, as in the official training where the classifier gets ``centroids.data``.
        """
        if not self.uses_rust(x, centroids):
            return torch_nearest(x, centroids.detach().to(x.dtype))
        index = self._index_for(centroids)
        dist, idx = index.search(x.detach().to(torch.float32), k=1)
        return dist[:, 0].to(x.dtype), idx[:, 0].to(torch.long)

    def _index_for(self, centroids: Tensor):
        key = (centroids.data_ptr(), centroids._version, tuple(centroids.shape), centroids.dtype)
        if self._index is not None:
            if self._source is not None and self._source() is centroids and self._source_key == key:
                return self._index
            if self._snapshot.shape == centroids.shape and torch.equal(self._snapshot, centroids.detach().to(torch.float32)):
                self._source, self._source_key = weakref.ref(centroids), key
                return self._index
        snapshot = centroids.detach().to(torch.float32).clone().contiguous()
        self._index = _rust_index_class()(snapshot, backend="rust")
        self._snapshot = snapshot
        self._source, self._source_key = weakref.ref(centroids), key
        self.builds += 1
        return self._index
