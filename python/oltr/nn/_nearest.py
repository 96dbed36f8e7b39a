"""Nearest centroid for the meta-embedding classifier: Rust core at inference, torch in training.

The classifier needs, per query row, the distance to (and index of) the nearest centroid;
:class:`NearestCentroidDispatch` picks the engine (the open-set detector that scores by
centroid distance is :class:`oltr.scores.NearestCentroid`, a different thing).

* float64 features (a float64 model) are answered in float64 by the exact torch path
  (:func:`oltr.memory._torch.nearest_float64`), with or without gradient: the Rust core and
  the public memory API compute float32 distances.
* When autograd has to flow through the distance (grad enabled and ``x`` requires grad), or
  the tensors are not on the CPU, or the Rust core is not importable, the differentiable
  torch path of :func:`oltr.memory.nearest_centroids` (``backend="torch"``: exact distances,
  the gradient of the official ``norm(x - c)`` through the winner) runs.
* Otherwise (float32 CPU inference) the Rust core (:class:`oltr.memory.CentroidIndex`, backend
  ``"rust"``) answers. Building an index copies the centroids, so it is cached while the
  centroids do not change: the same tensor object with the same version counter (in-place
  updates through autograd-visible ops such as ``copy_`` or an optimizer step bump it) reuses
  the index at no cost; any other tensor is compared by value with the snapshot the index was
  built from (O(K*D), far cheaper than a search), and the index is rebuilt when they differ.
  Writes through ``.data`` bypass the version counter; they are caught only when the tensor
  object passed differs, so call :meth:`NearestCentroidDispatch.clear` after such writes.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ["NearestCentroidDispatch", "BACKENDS", "rust_core_available", "source_key"]

#: ``backend`` values accepted by :class:`NearestCentroidDispatch`.
BACKENDS = ("auto", "torch", "rust")

_rust_available: Optional[bool] = None


def rust_core_available() -> bool:
    """Whether :mod:`oltr.memory` can use the compiled Rust core (checked once)."""
    global _rust_available
    if _rust_available is None:
        from oltr.memory.index import resolve_backend

        _rust_available = resolve_backend("auto") == "rust"
    return _rust_available


def _torch_nearest(x: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    from oltr.memory import nearest_centroids

    dist, idx = nearest_centroids(x, centroids, k=1, backend="torch")
    return dist[:, 0], idx[:, 0]


class NearestCentroidDispatch:
    """Dispatches nearest-centroid queries (see the module docstring); caches the Rust index.

    ``backend``: ``"auto"`` (Rust at float32 CPU inference, torch otherwise), ``"torch"``
    (always the differentiable path) or ``"rust"`` (the Rust core whenever no gradient is
    needed and x is not float64; raises if the core is missing).
    """

    def __init__(self, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Forget the cached index."""
        self._index: Optional[Any] = None  # a CentroidIndex (Rust) once built
        self._snapshot: Optional[Tensor] = None
        self._appended: list[Tensor] = []  # rows added to the index by extend(), after the snapshot
        self._source: Optional[weakref.ref] = None
        self._source_key: Optional[tuple] = None
        self.builds = 0  # how many indexes were built (for tests and diagnostics)

    def __getstate__(self) -> dict:
        # the cached index (a Rust object) is neither copied nor pickled: it is rebuilt on use
        return {"backend": self.backend}

    def __setstate__(self, state: dict) -> None:
        self.backend = state["backend"]
        self._lock = threading.Lock()
        self.clear()

    def uses_rust(self, x: Tensor, centroids: Tensor) -> bool:
        """Whether ``__call__`` would answer with the Rust core for these tensors."""
        if self.backend == "torch" or x.dtype == torch.float64:
            return False
        needs_grad = torch.is_grad_enabled() and x.requires_grad
        on_cpu = x.device.type == "cpu" and centroids.device.type == "cpu"
        if needs_grad or not on_cpu:
            return False
        if self.backend == "rust":
            if not rust_core_available():
                raise RuntimeError("backend='rust' was asked for but the oltr Rust core is not importable")
            return True
        return rust_core_available()

    def __call__(self, x: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, D), ``centroids`` (K, D) -> ``(dist (B,) x.dtype, idx (B,) int64)``.

        The centroids are constants here (detached): the distance is differentiable in ``x``
        only, as in the official training where the classifier gets ``centroids.data``.
        float64 ``x`` gets float64-exact distances (computed in float64 throughout).
        """
        if x.dtype == torch.float64:
            from oltr.memory._torch import nearest_float64

            dist, idx = nearest_float64(x, centroids.detach().to(torch.float64), k=1)
            return dist[:, 0], idx[:, 0]
        if not self.uses_rust(x, centroids):
            # half-precision features (autocast) are measured in float32
            query = x if x.dtype == torch.float32 else x.float()
            dist, idx = _torch_nearest(query, centroids.detach().to(query.dtype))
            return dist.to(x.dtype), idx
        index = self._index_for(centroids)
        # a float32 C-contiguous numpy array takes the index's direct path (the core checks it)
        rows = np.ascontiguousarray((x if x.dtype is torch.float32 else x.float()).detach().numpy())
        dist, idx = index.search(rows, k=1)
        distance = torch.from_numpy(dist[:, 0])
        return (distance if x.dtype is torch.float32 else distance.to(x.dtype)), torch.from_numpy(idx[:, 0])

    def extend(self, old: Tensor, new: Tensor, old_key: Optional[tuple] = None) -> None:
        """``new`` is ``old`` with rows appended (a class enrolled; or none: the same values
        in a tensor with room, :meth:`oltr.OLTRModel.reserve_classes`): when the cached index was
        built from ``old``, unchanged, the appended rows are added to it as an edit
        (:meth:`oltr.memory.CentroidIndex.add`, O(rows·D) instead of a rebuild on the next
        call) and ``new`` becomes its source; otherwise nothing happens (the next call
        rebuilds as usual). ``old_key``: :func:`source_key` of ``old`` taken before ``new``
        was written, when that write bumped ``old``'s version counter (``new`` a view of the
        same buffer, :mod:`oltr.nn._growable`); default: ``old`` as it is now."""
        with self._lock:
            key = source_key(old) if old_key is None else old_key
            if self._index is None or self._source is None or self._source() is not old \
                    or self._source_key != key:
                return
            count = new.shape[0] - old.shape[0]
            if count < 0 or tuple(new.shape[1:]) != tuple(old.shape[1:]):
                return
            if count:  # none: the same rows in another tensor (room reserved)
                rows = new.detach()[old.shape[0]:].to(torch.float32).cpu().contiguous()
                self._index.add(rows)
                self._appended.append(rows)  # the snapshot's later rows: no O(K·D) copy
            self._source, self._source_key = weakref.ref(new), source_key(new)

    def _matches_snapshot(self, centroids: Tensor) -> bool:
        """Whether ``centroids`` equal, by value, the rows the cached index holds."""
        cached = self._snapshot
        if cached is None:
            return False
        rows = cached.shape[0] + sum(part.shape[0] for part in self._appended)
        if (rows, *cached.shape[1:]) != tuple(centroids.shape):
            return False
        values = centroids.detach().to(torch.float32)
        start = 0
        for part in (cached, *self._appended):
            if not torch.equal(part, values[start:start + part.shape[0]]):
                return False
            start += part.shape[0]
        return True

    def _index_for(self, centroids: Tensor):
        with self._lock:  # several threads may run the same model
            return self._cached_index(centroids)

    def _cached_index(self, centroids: Tensor):
        key = source_key(centroids)
        version = key[1]
        if self._index is not None:
            if version is not None and self._source is not None and self._source() is centroids \
                    and self._source_key == key:
                return self._index
            if self._matches_snapshot(centroids):
                self._source, self._source_key = weakref.ref(centroids), key
                return self._index
        snapshot = centroids.detach().to(torch.float32).clone().contiguous()
        from oltr.memory import CentroidIndex

        self._index = CentroidIndex(snapshot, backend="rust")
        self._snapshot, self._appended = snapshot, []
        self._source, self._source_key = weakref.ref(centroids), key
        self.builds += 1
        return self._index


def source_key(centroids: Tensor) -> tuple:
    """What identifies the state of a centroid tensor for the cache: data pointer, version
    counter (None for an inference tensor, which keeps none: compared by value), shape, dtype."""
    try:
        version = centroids._version
    except RuntimeError:
        version = None
    return (centroids.data_ptr(), version, tuple(centroids.shape), centroids.dtype)
