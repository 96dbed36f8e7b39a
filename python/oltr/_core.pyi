"""Typed stub of the compiled extension ``oltr._core`` (built from ``rust/src/python.rs``).

Exact, fused, multi-threaded nearest-centroid search. All arrays are NumPy; the GIL is released
while the kernel runs. Inputs must not be modified by another thread during a call.
"""
from typing import Final, final

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Self

__all__ = [
    "__version__",
    "build_profile",
    "CentroidIndex",
    "set_num_threads",
    "get_num_threads",
    "available_kernels",
    "matmul",
    "meta_embedding",
    "cosine_logits",
]

__version__: Final[str]
#: "release" or "debug".
build_profile: Final[str]

@final
class CentroidIndex:
    """Exact k-nearest-centroid search over fixed centroids, copied and packed once.

    centroids: float32 (K, D), K >= 1, D >= 1, finite (ValueError otherwise; a dtype other
    than float32 raises TypeError). kernel: ``"auto"`` (the fastest engine this CPU runs) or
    a name of :func:`available_kernels`; an unknown name, or an engine this CPU cannot run
    (or one listed in ``$OLTR_DISABLE_KERNELS``), raises ValueError naming the valid choices,
    and so does an engine that cannot handle D (the int8 engines ``"avx512-vnni-i8"`` and
    ``"avx-vnni-i8"`` above D = 65536).
    """

    def __new__(cls, centroids: NDArray[np.float32], kernel: str = "auto") -> Self: ...
    @property
    def num_classes(self) -> int:
        """K, the number of centroids."""
    @property
    def dim(self) -> int:
        """D, the feature dimension."""
    @property
    def kernel(self) -> str:
        """The engine (candidate pass) of searches with small k (k = 1, reachability), one of
        :func:`available_kernels`; :meth:`kernel_for` names the one a search for k runs."""
    def kernel_for(self, k: int, batch: int) -> str:
        """The engine a search of ``batch`` queries for the k nearest runs (1 <= k <= K,
        batch >= 1, else ValueError): ``kernel``, except for a ``kernel="auto"`` index over an
        int8 engine (``"avx512-vnni-i8"``, ``"avx-vnni-i8"``), which also packs the next
        non-int8 engine of :func:`available_kernels` and runs it for
        k >= max(ceil(sqrt(K) / 5), ceil(K / (100 batch^2)))."""
    @property
    def packed_nbytes(self) -> int:
        """Bytes of packed centroid data a one-query search streams (the engine's panels,
        padding included; the float32 rows for ``"portable-f32"``): int8 K·D for
        ``"avx512-vnni-i8"`` and ``"avx-vnni-i8"``, bf16 2·K·D for ``"avx512-bf16"`` and for the f32 engines (their
        few-query copy), 4·K·D for ``"portable-f32"``."""
    def search(
        self, x: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """x: float32 (B, D), finite; 1 <= k <= K.

        Returns (dist float32 (B, k), idx int64 (B, k)): exact L2 distances (not squared),
        ascending, equal distances ordered by the lower centroid index. B = 0 gives (0, k).
        """
    def reachability(self, x: NDArray[np.float32], scale: float, eps: float) -> NDArray[np.float32]:
        """x: float32 (B, D) -> float32 (B,) = scale / max(nearest exact L2 distance, eps).

        scale and eps must be finite and > 0.
        """

def set_num_threads(n: int) -> None:
    """Use n >= 1 threads from the next call on (ValueError otherwise)."""

def get_num_threads() -> int:
    """Threads in use: set_num_threads(n), else $OLTR_NUM_THREADS, else the core count."""

def available_kernels() -> list[str]:
    """The engines this CPU runs, fastest first; ``"portable-f32"`` (any CPU) is always last.

    The order is ranked once per process (static preference unless a ~20 ms timing of a small
    search shows an engine more than 15 % faster); ``kernel="auto"`` takes the first that
    handles the centroids' D.

    Engine names: ``"avx512-vnni-i8"`` (AVX-512 VNNI, int8 candidates; D <= 65536),
    ``"avx512-bf16"`` (AVX-512 BF16), ``"avx-vnni-i8"`` (the int8 engine on 256-bit vectors:
    AVX-VNNI, or AVX-512 VNNI + VL; D <= 65536; ranked after every other SIMD engine and never
    picked by ``"auto"`` where ``"avx512-vnni-i8"`` runs), ``"avx512-f32"`` (AVX-512F),
    ``"avx2-f32"`` (AVX2 + FMA),
    ``"portable-f32"``. Names listed in ``$OLTR_DISABLE_KERNELS`` (comma-separated) are
    left out.
    """

def matmul(
    a: NDArray[np.float32],
    b: NDArray[np.float32],
    out: NDArray[np.float32],
    bias: NDArray[np.float32] | None = None,
    *,
    kernel: str = "auto",
) -> None:
    """out = a @ b (+ bias), float32, written in place; batch-invariant bits.

    a: float32 (M, K); b: float32 (K, N); out: float32 (M, N), writeable; bias: float32 (N,) or
    None. The last axis of each must have unit stride; rows may have any stride >= the row
    length (views of larger arrays). ``out[i, j] = fl(acc + bias[j])`` (no addition without
    bias) where ``acc = 0`` and ``acc = fma(a[i, k], b[k, j], acc)`` for k = 0..K-1 in order,
    so an element's bits depend only on ``a[i, :]``, ``b[:, j]`` and ``bias[j]``: not on M, the
    row's position, the thread count or the kernel. K = 0 gives bias (or zeros).

    kernel: ``"auto"`` (the first of ``"avx512-f32"``, ``"avx2-f32"``, ``"portable-f32"`` this
    CPU runs) or one of those names. A wrong dtype, number of dimensions, shape or inner
    stride, a read-only ``out``, ``out`` overlapping a, b or bias in memory, or an unknown or
    unsupported kernel raises ValueError naming the argument. Runs on
    :func:`get_num_threads` threads (GIL released).
    """

def meta_embedding(
    x: NDArray[np.float32],
    hallucinator_t: NDArray[np.float32],
    hallucinator_bias: NDArray[np.float32],
    centroids: NDArray[np.float32],
    selector_t: NDArray[np.float32],
    selector_bias: NDArray[np.float32],
    nearest_distance: NDArray[np.float32] | None = None,
    *,
    reach_scale: float = 10.0,
    eps: float = 1e-12,
    kernel: str = "auto",
) -> tuple[
    NDArray[np.float32],
    NDArray[np.float32],
    NDArray[np.float32],
    NDArray[np.float32],
    NDArray[np.float32] | None,
]:
    """The meta-embedding head's inference formulas in one call (GIL released).

    x: float32 (B, D); hallucinator_t: (D, K) (the hallucinator weight transposed) and
    hallucinator_bias (K,); centroids (K, D); selector_t: (D, D) (the selector weight
    transposed) and selector_bias (D,); nearest_distance: (B,) or None. Returns float32
    ``(memory, selector, infused, meta)`` (B, D), views of one new (4, B, D) array (one
    allocation: any of them keeps all four alive), and ``reachability`` (B,) (None without a
    distance)::

        memory   = softmax(x @ hallucinator_t + hallucinator_bias) @ centroids
        selector = tanh(x @ selector_t + selector_bias)
        infused  = selector * memory
        reach    = reach_scale / max(nearest_distance, eps)
        meta     = reach * (x + infused)        (x + infused without a distance)

    Products as :func:`matmul` (``kernel`` picks its engine), elementwise steps with the same
    IEEE operations on every CPU (exp and tanh within 2 ulp): a row's results have the same
    bits in any batch, at any thread count, with any kernel. Layouts as :func:`matmul`; a
    wrong dtype, number of dimensions, shape or inner stride, or a reach_scale or eps that is
    not finite and > 0 raises ValueError naming the argument; results (and the (B, K) scores)
    too large to allocate raise MemoryError. K = 0 reads out zeros.
    """

def cosine_logits(
    v: NDArray[np.float32],
    unit_weight_t: NDArray[np.float32],
    logit_scale: float,
    *,
    squash: str = "code",
    kernel: str = "auto",
) -> NDArray[np.float32]:
    """The cosine classifier's logits, float32 (B, K), of v: float32 (B, D) (GIL released).

    Each row of v times ``logit_scale / (1 + ||v||)`` (``squash="code"``, the official code)
    or ``logit_scale * ||v|| / (1 + ||v||^2)`` (``"paper"``), then ``@ unit_weight_t`` (D, K),
    the classifier's unit weight rows transposed; a zero row gives zero logits. Batch-invariant
    bits as :func:`meta_embedding`. ValueError naming the argument for a bad layout or shape,
    an unknown squash, a non-finite logit_scale or an unknown kernel; MemoryError for logits
    too large to allocate.
    """
