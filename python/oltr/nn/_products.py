"""Matrix products of the inference heads on numpy's BLAS, split over threads by work stealing.

At CPU inference the cosine and meta-embedding heads compute their products through numpy
(zero-copy views of the tensors) instead of ``torch.mm``: the OpenBLAS that numpy ships ran
these shapes faster than torch's MKL on the CPU measured (AMD Zen 4, D = 512: ~1.1-1.3x for
64-1024 rows, ~1.5-2x for single rows; benches/bench_head.py), and numpy's per-call cost on
small arrays is a fraction of torch's. Each product is cut into tiles of its output
(:func:`tiles`): the column ranges follow from K and D alone and the row blocks are large, so
an entry is computed the same way whatever the batch (a row's bits do not depend on the batch
size from 3 rows up, nor on the thread count or on which thread ran a tile); the caller and
``torch.get_num_threads() - 1`` helper threads take tiles from a shared counter
(:func:`run_phases`), with OpenBLAS single-threaded meanwhile (:class:`single_threaded_blas`).
The split is ours rather than OpenBLAS's because OpenBLAS's own threads stall when another
process holds a core (a 2-thread 64 x 1e3 x 512 product: 24 ms instead of 0.4 ms, measured,
seemingly waiting for the busy core's time slice), whereas here a free thread takes the tiles
the other one has not started, and a thread with nothing left to do sleeps.

:func:`available` says whether this path can run: numpy's BLAS is an OpenBLAS whose thread
count this module can set (found among the libraries loaded in the process), and
:data:`enabled` is true (tests switch it off to compare with the torch path); heads narrower
than :data:`MIN_HEAD_WIDTH` (K x D) use torch for batches of 2 rows or more. The thread count is
process-wide: another thread's numpy product that runs during a head call runs on one thread
(slower, same result).
"""
from __future__ import annotations

import ctypes
import itertools
import os
import queue
import threading
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["Phase", "Tasks", "Tile", "available", "enabled", "product_into", "run", "run_phases",
           "single_threaded_blas", "tiles", "view"]

#: (r0, r1, c0, c1): rows r0:r1 and columns c0:c1 of a product's output.
Tile = Tuple[int, int, int, int]

#: Switch for tests and diagnostics: False sends every head call to the torch path.
enabled = True

#: A tile gets at least this many multiply-adds (~40 µs on one core): less would cost more
#: in hand-offs than it saves.
TILE_WORK = 1 << 21
#: At most this many tiles per product (enough for work stealing between a few threads).
MAX_TILES = 16
#: A column range of a product has ``width * inner`` >= this. With 2 rows or more, such
#: products take OpenBLAS's blocked kernels, which compute an entry the same way whatever the
#: row count; smaller ones may take its small-matrix kernels, whose rounding changes with the
#: shape (measured with OpenBLAS 0.3.31, D = 512: 2 rows x 600 columns differ from the same
#: rows in a larger batch, 2 x 700 do not). Heads narrower than this use torch for batches
#: of 2 rows or more.
RANGE_WORK = 500_000
#: Heads narrower than this (K x D) take torch for batches of 2 rows or more (>= RANGE_WORK,
#: so a numpy head's column ranges are batch-stable). Measured on the AMD EPYC (2 threads,
#: D = 512), numpy path ÷ torch path time: K = 1000 (512k): 1.8x at B = 16, 1.0-1.2x at 64,
#: 1.06-1.13x at 1024; K = 2000: 0.93-1.02x; K = 4000-8000: 0.73-1.0x.
MIN_HEAD_WIDTH = 1 << 20
#: Row blocks are at least MIN_ROWS rows high, BLOCK_ROWS where the batch allows (see
#: :func:`tiles`): each one packs the whole right operand again.
MIN_ROWS = 32
BLOCK_ROWS = 256
#: Tile bounds are multiples of this (64-byte aligned float32 views).
ALIGN = 16

_SET_NAMES = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
              "openblas_set_num_threads64_", "openblas_set_num_threads")
_GET_NAMES = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
              "openblas_get_num_threads64_", "openblas_get_num_threads")


class _BlasThreads:
    """Get and set the thread count of the OpenBLAS numpy uses (``None`` handles: not found)."""

    def __init__(self) -> None:
        self.get: Optional[Callable[[], int]] = None
        self.set: Optional[Callable[[int], None]] = None
        if not _numpy_uses_openblas():
            return
        for path in _openblas_paths():
            try:
                lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            getter = next((getattr(lib, n) for n in _GET_NAMES if hasattr(lib, n)), None)
            setter = next((getattr(lib, n) for n in _SET_NAMES if hasattr(lib, n)), None)
            if getter is not None and setter is not None:
                getter.restype, getter.argtypes = ctypes.c_int, []
                setter.restype, setter.argtypes = None, [ctypes.c_int]
                self.get, self.set = getter, setter
                return


def _numpy_uses_openblas() -> bool:
    """Whether numpy's build configuration names an OpenBLAS as its BLAS."""
    try:
        name = np.__config__.CONFIG["Build Dependencies"]["blas"]["name"]
    except (AttributeError, KeyError, TypeError):
        return False
    return "openblas" in str(name).lower()


def _openblas_paths() -> list[str]:
    """The OpenBLAS libraries mapped into this process, numpy's own first."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = {fields[5] for fields in (line.split(None, 5) for line in maps.splitlines())
             if len(fields) == 6 and "openblas" in Path(fields[5]).name.lower()}
    numpy_dir = str(Path(np.__file__).resolve().parent)
    return sorted(paths, key=lambda p: (not p.startswith(numpy_dir + ".libs") and numpy_dir not in p, p))


_blas: Optional[_BlasThreads] = None
_depth_lock = threading.Lock()
_depth = 0
_saved_threads = 1


def _blas_threads() -> _BlasThreads:
    global _blas
    if _blas is None:
        _blas = _BlasThreads()
    return _blas


def available(width: int, rows: int, *tensors: Tensor) -> bool:
    """Whether the numpy path computes ``rows`` rows of a head of ``width`` = columns x inner
    dimension (K x D) with ``tensors``: ``width`` >= :data:`MIN_HEAD_WIDTH` or a single row (which
    has its own products either way); every tensor on the CPU, float32 or float64, all one
    dtype; numpy's OpenBLAS found; :data:`enabled`."""
    if not enabled or (width < MIN_HEAD_WIDTH and rows != 1) or \
            (_blas if _blas is not None else _blas_threads()).set is None:
        return False
    dtype = tensors[0].dtype
    if dtype is not torch.float32 and dtype is not torch.float64:
        return False
    for t in tensors:
        if t.dtype is not dtype or t.device.type != "cpu":
            return False
    return True


def view(tensor: Tensor) -> np.ndarray:
    """``tensor`` as a numpy array sharing its memory (any strides; no autograd)."""
    return tensor.detach().numpy()


class single_threaded_blas:
    """Context: numpy's OpenBLAS runs on one thread inside (nested and concurrent uses count;
    the outermost exit restores the count found on entry)."""

    def __enter__(self) -> None:
        global _depth, _saved_threads
        blas = _blas_threads()
        with _depth_lock:
            if _depth == 0:
                _saved_threads = blas.get()  # type: ignore[misc]
                if _saved_threads != 1:
                    blas.set(1)  # type: ignore[misc]
            _depth += 1

    def __exit__(self, *exc: object) -> None:
        global _depth
        with _depth_lock:
            _depth -= 1
            if _depth == 0 and _saved_threads != 1:
                _blas_threads().set(_saved_threads)  # type: ignore[misc]


def product_into(a: np.ndarray, weight: np.ndarray, out: np.ndarray, transposed: bool, tile: Tile) -> None:
    """``out[r0:r1, c0:c1] = a[r0:r1] @ W[c0:c1].T`` for ``tile`` = (r0, r1, c0, c1), with
    ``weight`` = W (N, D), or W.T (D, N) when ``transposed`` (a task of :func:`run`)."""
    r0, r1, c0, c1 = tile
    np.matmul(a[r0:r1], weight[:, c0:c1] if transposed else weight[c0:c1].T, out=out[r0:r1, c0:c1])


def tiles(rows: int, columns: int, inner: int) -> list[Tile]:
    """Tiles ``(r0, r1, c0, c1)`` covering a (rows, columns) output whose entries cost
    ``inner`` multiply-adds each, in row-major order. The column ranges depend on
    ``columns`` and ``inner`` only (at most :data:`MAX_TILES`, each with ``width * inner``
    >= :data:`RANGE_WORK`), so an entry is computed the same way whatever the row count;
    rows are split into blocks of :data:`BLOCK_ROWS` (or two halves of :data:`MIN_ROWS` or
    more), where there is work for more tiles (:data:`TILE_WORK` each). Bounds are multiples of :data:`ALIGN`."""
    across = max(1, min(MAX_TILES, columns * inner // RANGE_WORK))
    count = min(MAX_TILES, rows * columns * inner // TILE_WORK)
    # blocks of ~BLOCK_ROWS (fewer re-packs of the right operand), or two halves of a small batch
    down = max(1, min(count // across, max(rows // BLOCK_ROWS, min(2, rows // MIN_ROWS))))
    return [(r0, r1, c0, c1) for r0, r1 in _split(rows, down) for c0, c1 in _split(columns, across)]


def _split(length: int, count: int) -> list[tuple[int, int]]:
    """``range(length)`` in ``count`` or fewer pieces, bounds multiples of :data:`ALIGN`, the
    last one at least :data:`ALIGN` long unless it is the only one."""
    if length == 0:
        return [(0, 0)]
    width = -(-length // count)
    width = -(-width // ALIGN) * ALIGN
    pieces = [(lo, min(length, lo + width)) for lo in range(0, length, width)]
    if len(pieces) > 1 and pieces[-1][1] - pieces[-1][0] < ALIGN:  # no sliver (a 1-row product is a GEMV)
        pieces[-2:] = [(pieces[-2][0], length)]
    return pieces


#: One product's tasks: ``(fn, args, tiles)`` stands for ``fn(*args, tile)`` for every tile.
Tasks = Tuple[Callable[..., None], tuple, Sequence[Tile]]
#: A phase: tasks, and what to run once all are done, before the next phase (or None).
Phase = Tuple[Sequence[Tasks], Optional[Callable[[], None]]]


class _Step:
    """One phase of a :class:`_Job`: its tasks, a claim and a completion counter, and the
    event set once its ``after`` has run."""

    __slots__ = ("tasks", "after", "claim", "finished", "done")

    def __init__(self, tasks: list[Callable[[], None]], after: Optional[Callable[[], None]]) -> None:
        self.tasks, self.after = tasks, after
        self.claim = itertools.count()  # next() is atomic under the GIL
        self.finished = itertools.count()
        self.done = threading.Event()


class _Job:
    """Phases of tasks shared by the caller and the helpers: each thread takes the next
    unclaimed task of the current phase; the thread that completes a phase's last task runs
    its ``after`` and goes on to the next phase at once (a thread that runs out of tasks
    first waits for it), so no phase waits for a sleeping thread to wake."""

    __slots__ = ("steps", "error")

    def __init__(self, phases: Sequence[Phase]) -> None:
        self.steps = [_Step([partial(fn, *args, tile) for fn, args, tiles in tasks for tile in tiles], after)
                      for tasks, after in phases]
        self.error: Optional[BaseException] = None

    def work(self) -> None:
        for step in self.steps:
            count = len(step.tasks)
            while (i := next(step.claim)) < count:
                self._call(step.tasks[i])
                if next(step.finished) == count - 1:
                    if step.after is not None:
                        self._call(step.after)
                    step.done.set()
            step.done.wait()

    def _call(self, fn: Callable[[], None]) -> None:
        if self.error is not None:  # the call fails: the rest is skipped
            return
        try:
            fn()
        except BaseException as error:  # re-raised by the caller
            if self.error is None:
                self.error = error


class _Helpers:
    """Daemon helper threads fed through one queue (started on first use; after a fork the
    child starts its own)."""

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._queue: "queue.SimpleQueue[_Job]" = queue.SimpleQueue()
        self._count = 0
        self._lock = threading.Lock()

    def offer(self, job: _Job, helpers: int) -> None:
        if self._count < helpers:
            with self._lock:
                while self._count < helpers:
                    threading.Thread(target=self._loop, args=(self._queue,), daemon=True,
                                     name=f"oltr-products-{self._count}").start()
                    self._count += 1
        for _ in range(helpers):
            self._queue.put(job)

    @staticmethod
    def _loop(jobs: "queue.SimpleQueue[_Job]") -> None:
        while True:
            jobs.get().work()


_helpers = _Helpers()


def run(tasks: Sequence[Tasks], work: int) -> None:
    """``fn(*args, tile)`` for every ``(fn, args, tiles)`` of ``tasks`` and every tile: one
    phase of :func:`run_phases`."""
    run_phases([(tasks, None)], work)


def run_phases(phases: Sequence[Phase], work: int) -> None:
    """Every phase's tasks (``fn(*args, tile)`` for every ``(fn, args, tiles)`` and every
    tile), then its ``after``, phase by phase, on the calling thread and up to
    ``torch.get_num_threads() - 1`` helpers: no more helpers than the largest phase's tasks
    - 1, and one per :data:`TILE_WORK` of ``work`` (the multiply-adds in all) beyond the
    first, since a hand-off costs tens of µs. Returns when all are done, raising the first
    error. Call inside :class:`single_threaded_blas`. Every phase has at least one task."""
    widest = max(sum(len(tiles) for _, _, tiles in tasks) for tasks, _ in phases)
    helpers = min(torch.get_num_threads() - 1, widest - 1, work // TILE_WORK - 1)
    if helpers < 1:
        for tasks, after in phases:
            for fn, args, tiles in tasks:
                for tile in tiles:
                    fn(*args, tile)
            if after is not None:
                after()
        return
    job = _Job(phases)
    _helpers.offer(job, helpers)
    job.work()
    if job.error is not None:
        raise job.error
