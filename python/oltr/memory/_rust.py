"""Rust backend: the fused, multi-threaded kernel of ``oltr._core``.

``oltr._core`` is imported lazily, on the first use of this backend, so the rest of
:mod:`oltr.memory` works before the extension is built. The core packs the centroids once,
validates its inputs again, releases the GIL while it computes and returns exact L2
distances (GEMM-form candidates re-ranked exactly, ties by the lower index).
"""
from __future__ import annotations

import importlib
import threading

import numpy as np

from .threads import apply_thread_count_to_core

__all__ = ["DEFAULT_KERNEL", "RustBackend", "available_kernels", "load_core"]

#: The ``kernel=`` value that lets the core pick its fastest engine for this CPU.
DEFAULT_KERNEL = "auto"

_load_lock = threading.Lock()
_core = None


def load_core():
    """Import ``oltr._core`` once and give it the configured thread count.

    Raises ``ImportError`` with a build hint when the extension is missing.
    """
    global _core
    with _load_lock:
        if _core is None:
            try:
                core = importlib.import_module("oltr._core")
            except ImportError as err:
                raise ImportError(
                    "the Rust backend needs the compiled extension oltr._core; build it with "
                    "`make install` (or use backend='faiss' / 'torch')"
                ) from err
            apply_thread_count_to_core(core)
            _core = core
        return _core


def available_kernels() -> list[str]:
    """Names of the Rust core's engines this CPU runs, fastest first (``list[str]``).

    The order is the core's ranking (its static preference, int8 AVX-512 VNNI > bf16 > int8
    256-bit VNNI > AVX-512 f32 > AVX2 f32, the 256-bit int8 engine last of them where the
    512-bit one runs, unless a one-time ~20 ms timing per process shows an engine clearly faster);
    ``kernel="auto"`` takes the first that handles the index's D. Each name is a valid
    ``kernel=`` of :class:`oltr.memory.CentroidIndex`; ``"portable-f32"`` is always last. Engines listed in the
    ``OLTR_DISABLE_KERNELS`` environment variable (comma-separated) are left out. Raises
    ``ImportError`` with a build hint when ``oltr._core`` is not built.
    """
    return list(load_core().available_kernels())


class RustBackend:
    """k-nearest centroids through ``oltr._core.CentroidIndex``.

    centroids: float32 (K, D) C-contiguous numpy array (the core copies and packs it once).
    kernel: ``"auto"`` or a name of :func:`available_kernels` (``ValueError`` from the core,
    naming the choices, for an unknown name or an engine this CPU cannot run).
    """

    name = "rust"
    array_kind = "numpy"
    require_cpu = True
    # The core validates float32 C-contiguous numpy queries itself (ValueError naming x for
    # NaN/Inf; B = 0 gives (0, k) arrays): CentroidIndex.search skips its Python checks.
    validates_queries = True

    def __init__(self, centroids: np.ndarray, kernel: str = DEFAULT_KERNEL) -> None:
        if not isinstance(kernel, str):
            raise TypeError(f"kernel must be a str, got {type(kernel).__name__}")
        self._index = load_core().CentroidIndex(centroids, kernel=kernel)

    @property
    def kernel(self) -> str:
        """The engine that runs (one of :func:`available_kernels`)."""
        return self._index.kernel

    def kernel_for(self, k: int, batch: int) -> str:
        """The engine a search of ``batch`` queries for ``k`` neighbours runs."""
        return self._index.kernel_for(k, batch)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """x: float32 (B, D) C-contiguous -> (dist float32 (B, k), idx int64 (B, k))."""
        return self._index.search(x, k)

    def reachability(self, x: np.ndarray, scale: float, eps: float) -> np.ndarray:
        """x: float32 (B, D) -> float32 (B,) = scale / max(nearest distance, eps)."""
        return self._index.reachability(x, scale, eps)
