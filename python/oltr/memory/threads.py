"""Thread count of the memory backends (the Rust pool and FAISS's OpenMP pool).

The count is, in order of precedence: the last ``set_num_threads(n)``; the environment
variable ``OLTR_NUM_THREADS``; ``torch.get_num_threads()``. It is applied to the Rust core's
private pool and to FAISS (``faiss.omp_set_num_threads``) when each is loaded, and again on
every ``set_num_threads`` call. The torch backend follows torch's own setting; note that
FAISS and torch share one OpenMP runtime in the usual wheels, so setting FAISS's count also
changes ``torch.get_num_threads()``. ``using_num_threads(n)`` sets all three for a block and
restores them afterwards.

Every count must lie in ``1 ..`` :data:`MAX_NUM_THREADS` (8 × the CPU count): more threads
than that only oversubscribe the machine, and a huge count (4096, 10**9) would make the next
search spend minutes starting threads. Counts outside raise ``ValueError``; non-integers
(floats, bools, strings) raise ``TypeError``.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Iterator, Optional

from ._validation import check_int

__all__ = [
    "ENV_VAR",
    "MAX_NUM_THREADS",
    "apply_thread_count_to_core",
    "apply_thread_count_to_faiss",
    "check_num_threads",
    "get_num_threads",
    "set_num_threads",
    "using_num_threads",
]

#: environment variable read for the default thread count.
ENV_VAR = "OLTR_NUM_THREADS"

#: the largest accepted thread count: 8 threads per CPU the operating system reports.
MAX_NUM_THREADS = 8 * (os.cpu_count() or 1)

_lock = threading.Lock()
_configured: Optional[int] = None


def check_num_threads(n: object, name: str = "n") -> int:
    """``n`` as an int in ``1 .. MAX_NUM_THREADS``; TypeError for non-integers, else ValueError."""
    n = check_int(n, name, 1)
    if n > MAX_NUM_THREADS:
        raise ValueError(
            f"{name} must be <= MAX_NUM_THREADS = {MAX_NUM_THREADS} (8 x {os.cpu_count() or 1} "
            f"CPUs), got {n}"
        )
    return n


def _default_count() -> int:
    raw = os.environ.get(ENV_VAR)
    if raw is not None and raw.strip():
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{ENV_VAR} must be an integer >= 1, got {raw!r}") from None
        return check_num_threads(value, ENV_VAR)
    import torch

    return min(MAX_NUM_THREADS, max(1, torch.get_num_threads()))


def get_num_threads() -> int:
    """Threads used by the Rust and FAISS backends (see the module docstring)."""
    with _lock:
        return _configured if _configured is not None else _default_count()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 <= n <= :data:`MAX_NUM_THREADS`) in the Rust core and in FAISS from
    now on (process-wide). ``ValueError`` outside that range, ``TypeError`` for a non-integer."""
    global _configured
    n = check_num_threads(n)
    with _lock:
        _configured = n
    core = sys.modules.get("oltr._core")
    if core is None:
        try:
            import oltr._core as core  # noqa: F811
        except ImportError:
            core = None  # applied when the Rust backend is first used
    if core is not None:
        core.set_num_threads(n)
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(n)


def apply_thread_count_to_core(core: Any) -> None:
    """Give the (just imported) Rust core the current thread count."""
    core.set_num_threads(get_num_threads())


def apply_thread_count_to_faiss(faiss: Any) -> None:
    """Give FAISS the current thread count."""
    faiss.omp_set_num_threads(get_num_threads())


@contextlib.contextmanager
def using_num_threads(n: int) -> Iterator[None]:
    """Use ``n`` threads in the Rust core, FAISS and torch inside the block; restore after."""
    global _configured
    import torch

    saved_torch, saved_configured = torch.get_num_threads(), _configured
    torch.set_num_threads(check_num_threads(n))
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(saved_configured or min(saved_torch, MAX_NUM_THREADS))
        with _lock:
            _configured = saved_configured
        torch.set_num_threads(saved_torch)  # last: FAISS may share torch's OpenMP runtime
