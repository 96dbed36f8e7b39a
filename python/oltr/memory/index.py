"""``CentroidIndex``: nearest class centroids, their exact L2 distances, and reachability.

OLTR's memory holds one centroid per class; at inference every feature needs its nearest
centroid distance, and reachability ``scale / d_min`` (the official code uses scale = 10).
The index is built once over frozen centroids and answers batches of queries with one of
three interchangeable backends, which return the same exact distances (to ~1e-6 relative):

* ``"rust"``  — the fused multi-threaded kernel of ``oltr._core`` (default of ``"auto"``);
* ``"faiss"`` — FAISS ``IndexFlatL2`` (exact), or HNSW / IVF via :class:`FaissOptions`;
* ``"torch"`` — the reference, the official formula in bounded memory, autograd-aware.

``"auto"`` picks ``"rust"`` when ``oltr._core`` is importable, else ``"faiss"``, else
``"torch"``; :attr:`CentroidIndex.backend` tells which one runs.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._validation import (
    check_backend_name,
    check_eps,
    check_k,
    check_scale,
    is_ready_queries,
    is_torch_tensor,
    prepare_centroids,
    prepare_queries,
    wrap_output,
)

__all__ = ["CentroidIndex", "REACHABILITY_EPS", "resolve_backend"]

#: Distances below this are clamped before dividing: reachability = scale / max(d, eps),
#: so a query equal to a centroid gets scale · 1e12 (finite in float32), never inf or NaN.
REACHABILITY_EPS = 1e-12

#: Default reachability scale: reachability = REACHABILITY_SCALE / max(d, eps), the constant the
#: official ``MetaEmbedding_Classifier`` hard-codes (docs/official-differences.md D22). One source for every
#: default in oltr (classifier, scores, evaluation).
REACHABILITY_SCALE = 10.0


def resolve_backend(backend: str) -> str:
    """Concrete backend name for ``backend`` ("auto" -> rust, else faiss, else torch)."""
    backend = check_backend_name(backend)
    if backend != "auto":
        return backend
    from ._rust import load_core

    try:
        load_core()
        return "rust"
    except ImportError:
        pass
    try:
        import faiss  # noqa: F401

        return "faiss"
    except ImportError:
        return "torch"


def _requires_grad(value: Any) -> bool:
    if not is_torch_tensor(value):
        return False
    import torch

    return bool(value.requires_grad) and torch.is_grad_enabled()


def _backend_class(name: str) -> Any:
    """RustBackend, FaissBackend or TorchBackend (imported on use)."""
    if name == "rust":
        from ._rust import RustBackend

        return RustBackend
    if name == "faiss":
        from ._faiss import FaissBackend

        return FaissBackend
    from ._torch import TorchBackend

    return TorchBackend


def _construct(cls: Any, prepared: Any, faiss_options: Any, kernel: str) -> Any:
    if cls.name == "faiss":
        return cls(prepared, faiss_options)
    if cls.name == "rust":
        return cls(prepared, kernel)
    return cls(prepared)


def _make_backend(name: str, centroids: Any, faiss_options: Any, snapshot: bool,
                  kernel: str = "auto") -> tuple[Any, Any]:
    """(backend, its prepared float32 centroids). The index keeps the prepared centroids (a
    private snapshot unless ``snapshot`` is False) for its edits (:meth:`CentroidIndex.add`
    ...); the Rust core packs its own copy and gives none back, so with it the snapshot is one
    (K, D) float32 copy more."""
    cls = _backend_class(name)
    prepared = prepare_centroids(centroids, cls.array_kind, require_cpu=cls.require_cpu, snapshot=snapshot)
    return _construct(cls, prepared, faiss_options, kernel), prepared


class CentroidIndex:
    """Exact k-nearest-centroid search over frozen centroids.

    The index owns a snapshot of the centroids, taken at construction, with every backend:
    writing to the caller's array or tensor afterwards (``c[0] = ...``, ``c.add_(1)``, an
    optimizer step) does not change the answers; change them through :meth:`add`,
    :meth:`remove` and :meth:`update` (exact, O(n·D) each; ids below) or build a new index.

    Ids: a fresh index's centroids have ids 0..K-1 (their rows); :meth:`add` issues ``max id
    ever issued + 1, ...``; a removed id is never issued again; :meth:`update` keeps the id.
    :meth:`search` returns ids, equal to those of an index built from scratch on the live
    centroids in id order (ties by the lower id); :attr:`num_classes` counts the live ones.
    Searches may run from several threads at once, but not while an edit runs. With
    the torch backend the snapshot is an autograd-aware ``clone``: when the centroids require
    grad (grad enabled), the distances still carry the gradient back to the caller's tensor.

    Args:
        centroids: (K, D) float32 or float64 numpy array or torch tensor, finite, K, D >= 1.
            Copied once into a float32 snapshot (the Rust core packs its own copy).
        backend: "auto", "rust", "faiss" or "torch".
        kernel: the Rust core's engine: "auto" (its fastest for this CPU) or a name of
            :func:`oltr.memory.available_kernels`; any other value implies
            ``backend="rust"`` when backend is "auto" and raises ``ValueError`` with faiss or
            torch (the core raises ``ValueError`` naming the choices for an unknown name or
            an engine this CPU cannot run).
        faiss_options: :class:`FaissOptions` for the faiss backend (approximate HNSW / IVF);
            implies ``backend="faiss"`` when backend is "auto".

    Queries x are (B, D) float32/float64, numpy or torch (CPU for rust and faiss), any
    strides, never copied when already float32 and contiguous; results are torch tensors when
    x is one, numpy arrays otherwise. Every backend returns the exact answer for any finite
    float32 magnitudes (extreme ones are scored in float64 or exactly); distances beyond
    float32's range come back as inf. Complex inputs raise ``TypeError``.
    """

    def __init__(
        self, centroids: Any, backend: str = "auto", kernel: str = "auto", *, faiss_options: Any = None
    ):
        self._setup(centroids, backend, faiss_options, snapshot=True, kernel=kernel)

    @classmethod
    def _for_one_call(cls, centroids: Any, backend: str, faiss_options: Any) -> CentroidIndex:
        """An index that reads ``centroids`` without a snapshot, for the functional API, whose
        index lives for one call only (no later write of the caller's can reach it)."""
        index = cls.__new__(cls)
        index._setup(centroids, backend, faiss_options, snapshot=False)
        return index

    def _setup(self, centroids: Any, backend: str, faiss_options: Any, snapshot: bool, kernel: str = "auto") -> None:
        backend = check_backend_name(backend)
        if kernel != "auto":
            if backend == "auto" and faiss_options is None:
                backend = "rust"
            elif backend != "rust":
                raise ValueError(f"kernel is only valid with backend='rust', got kernel={kernel!r} "
                                 f"with backend={backend!r}")
        if faiss_options is not None:
            from .faiss_options import FaissOptions

            if not isinstance(faiss_options, FaissOptions):
                raise TypeError(
                    f"faiss_options must be a FaissOptions, got {type(faiss_options).__name__}"
                )
            if backend == "auto":
                backend = "faiss"
            elif backend != "faiss":
                raise ValueError(f"faiss_options is only valid with backend='faiss', got {backend!r}")
        name = resolve_backend(backend)
        self._impl, self._main_centroids = _make_backend(name, centroids, faiss_options, snapshot, kernel)
        self._backend_args = (name, faiss_options, kernel)
        self._edits: Any = None  # IndexEdits after the first add / remove / update
        shape = tuple(centroids.shape) if hasattr(centroids, "shape") else np.shape(centroids)
        self._num_classes, self._dim = int(shape[0]), int(shape[1])
        # Backends that validate float32 C-contiguous numpy queries themselves (shape, NaN/Inf,
        # B = 0) take them without the Python checks: the fast path of search().
        self._validates_queries = getattr(self._impl, "validates_queries", False)

    @property
    def num_classes(self) -> int:
        """K, the number of (live) centroids."""
        return self._num_classes

    @property
    def ids(self) -> np.ndarray:
        """The ids of the live centroids, ascending, int64 (K,): ``0..K-1`` until an edit; the
        ids :meth:`search` returns."""
        if self._edits is None:
            return np.arange(self._num_classes, dtype=np.int64)
        return self._edits.ids

    # -- edits -----------------------------------------------------------------------------
    def add(self, centroids: Any) -> np.ndarray:
        """Add ``centroids`` (n, D), float32/float64 numpy or torch (checked as at
        construction: ValueError / TypeError naming ``centroids``); returns their ids, int64
        (n,): ``max id ever issued + 1, ...``.

        O(n·D): the rows are kept apart from the built part, which is never repacked by an
        edit (only by a compaction, see :mod:`oltr.memory._edits`)."""
        rows = self._prepare_rows(centroids)
        state = self._edit_state()
        ids = state.add(rows)
        self._after_edit(state)
        return ids

    def remove(self, ids: Any) -> None:
        """Remove the centroids of ``ids`` (one id or a 1-D sequence of live ids, no
        duplicates; ValueError / TypeError naming ``ids`` otherwise). A removed id is never
        issued again; at least one centroid must remain."""
        from ._edits import check_ids

        state = self._edit_state()
        state.remove(check_ids(ids, "ids"), "ids")
        self._after_edit(state)

    def update(self, ids: Any, centroids: Any) -> None:
        """Replace the centroids of ``ids`` (live, no duplicates) by ``centroids`` (n, D); the
        ids stay. Everything is checked before anything changes."""
        from ._edits import check_ids

        checked = check_ids(ids, "ids")
        rows = self._prepare_rows(centroids)
        state = self._edit_state()
        state.update(checked, rows, "ids")
        self._after_edit(state)

    def compact(self) -> None:
        """Rebuild the built part over the live centroids now (edits compact by themselves
        when pending edits exceed a fraction of K, :data:`oltr.memory._edits.COMPACT_FRACTION`)."""
        if self._edits is not None:
            self._edits.compact()
            self._after_edit(self._edits)

    def _after_edit(self, state: Any) -> None:
        # a compaction replaces the built part: the old one (and its packed copy) is let go
        self._num_classes = state.num_classes
        self._impl, self._main_centroids = state.main_impl, state.main_centroids

    def _prepare_rows(self, centroids: Any):
        import torch

        impl = self._impl
        rows = prepare_centroids(centroids, impl.array_kind, require_cpu=impl.require_cpu, snapshot=True)
        if rows.shape[1] != self._dim:
            raise ValueError(f"centroids has dimension D={rows.shape[1]}, but the index has D={self._dim}")
        if not is_torch_tensor(rows):
            return torch.from_numpy(rows)
        if rows.device != self._main_centroids.device:
            raise ValueError(f"centroids are on {rows.device} but the index is on {self._main_centroids.device}")
        return rows

    def _edit_state(self) -> Any:
        if self._edits is None:
            import torch

            from ._edits import IndexEdits

            main = self._main_centroids
            tensor = main if is_torch_tensor(main) else torch.from_numpy(main)
            self._edits = IndexEdits(self._build_part, self._impl, tensor, self._impl.array_kind)
        return self._edits

    def _build_part(self, centroids: Any, main: bool) -> Any:
        """A backend of this index's kind over ``centroids`` (float32 tensor (n, D), private):
        the built part with this index's FAISS options, the delta part exact (flat)."""
        name, options, kernel = self._backend_args
        cls = _backend_class(name)
        value = centroids if cls.array_kind == "torch" else centroids.numpy()
        return _construct(cls, value, options if main else None, kernel)

    @property
    def dim(self) -> int:
        """D, the feature dimension."""
        return self._dim

    @property
    def backend(self) -> str:
        """The backend that runs: "rust", "faiss" or "torch"."""
        return self._impl.name

    @property
    def kernel(self) -> Optional[str]:
        """The Rust core's engine that runs (one of :func:`oltr.memory.available_kernels`),
        or None with the faiss and torch backends."""
        return getattr(self._impl, "kernel", None)

    def kernel_for(self, k: int, batch: int = 1) -> Optional[str]:
        """The Rust core's engine a search of ``batch`` queries for ``k`` neighbours runs (with
        ``kernel="auto"`` the core picks per call by k and B, see rust/README.md); None with the
        faiss and torch backends. ValueError for k < 1 or batch < 1."""
        impl = getattr(self._impl, "kernel_for", None)
        return None if impl is None else impl(k, batch)

    def __repr__(self) -> str:
        return f"CentroidIndex(num_classes={self._num_classes}, dim={self._dim}, backend={self.backend!r})"

    def _prepare(self, x: Any):
        impl = self._impl
        if impl.array_kind != "torch" and _requires_grad(x):
            raise ValueError(
                f"x requires grad but backend {impl.name!r} returns no gradient; "
                "use backend='torch' or detach x (or run under torch.no_grad())"
            )
        return prepare_queries(x, self._dim, impl.array_kind, require_cpu=impl.require_cpu)

    def _empty(self, xp: Any, shape: tuple[int, ...], dtype: str, as_torch: bool):
        if is_torch_tensor(xp):
            import torch

            empty = torch.empty(shape, dtype=getattr(torch, dtype), device=xp.device)
            return empty if as_torch else empty.numpy()
        return wrap_output(np.empty(shape, dtype=dtype), as_torch)

    def search(self, x: Any, k: int = 1):
        """The k nearest centroids of each query.

        x: (B, D). Returns ``(dist, idx)``: dist float32 (B, k), exact L2 distances (not
        squared) in ascending order, equal distances ordered by lower centroid index; idx
        int64 (B, k). B = 0 gives empty (0, k) results.
        """
        if type(k) is not int or not 1 <= k <= self._num_classes:
            k = check_k(k, self._num_classes)
        if self._edits is None and self._validates_queries and is_ready_queries(x, self._dim):
            return self._impl.search(x, k)
        xp, as_torch = self._prepare(x)
        if xp.shape[0] == 0:
            return (
                self._empty(xp, (0, k), "float32", as_torch),
                self._empty(xp, (0, k), "int64", as_torch),
            )
        if self._edits is not None:
            dist, idx = self._edits.search(xp, k)
        else:
            dist, idx = self._impl.search(xp, k)
        return wrap_output(dist, as_torch), wrap_output(idx, as_torch)

    def reachability(self, x: Any, scale: float = REACHABILITY_SCALE, eps: float = REACHABILITY_EPS):
        """Reachability ``scale / max(d_min, eps)`` of each query, float32 (B,).

        d_min is the exact L2 distance to the nearest centroid; ``eps`` (default
        :data:`REACHABILITY_EPS` = 1e-12) keeps a query that equals a centroid finite. scale
        and eps must be > 0 with scale / eps finite in float32.
        """
        scale = check_scale(scale)
        eps = check_eps(eps, scale)
        xp, as_torch = self._prepare(x)
        if xp.shape[0] == 0:
            return self._empty(xp, (0,), "float32", as_torch)
        if self._edits is not None:
            # from the float64 distance where the backend computes it so (the Rust core)
            reach = self._edits.reachability(xp, scale, eps, hasattr(self._impl, "reachability"))
        elif hasattr(self._impl, "reachability"):
            reach = self._impl.reachability(xp, scale, eps)
        else:
            d_min = self._impl.search(xp, 1)[0][:, 0]
            reach = scale / d_min.clip(min=eps)  # numpy and torch alike; float32
        return wrap_output(reach, as_torch)
