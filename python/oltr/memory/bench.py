"""A quick benchmark of nearest-centroid search: oltr's Rust core against numpy, torch and faiss.

``oltr bench`` runs it: for a few shapes (B queries, K centroids, D = 512, k nearest) it times,
in one process and with the same thread count for every library,

* ``rust``  — ``oltr._core.CentroidIndex(c, kernel="auto").search(x, k)`` (index built once,
  exact distances);
* ``numpy`` — ``x @ c.T`` GEMM form + ``argmin`` (``argpartition`` + sort for k > 1);
* ``torch`` — ``addmm`` GEMM form + ``min`` (``topk`` for k > 1);
* ``faiss`` — ``faiss.IndexFlatL2.search``;

and prints the medians and rust's speed-up over the fastest of the three. The full benchmark
(every engine this CPU runs, peers restricted to each engine's instruction set, this machine's
bandwidth and FLOP floors, behaviour under load, a BENCHMARKS.md section per CPU model) is
``python3 benches/bench_memory.py`` in the source tree; it reuses the helpers here (data,
peers, timing, thread settings) so both measure the same things.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

__all__ = [
    "DIM",
    "QUICK_CASES",
    "Case",
    "cases_argument",
    "core_index",
    "format_case",
    "format_count",
    "format_quick",
    "format_time",
    "main",
    "make_data",
    "numpy_search",
    "parse_cases",
    "run_quick",
    "thread_count",
    "time_calls",
    "torch_search",
    "warm_up",
]

DIM = 512
_NOISE = 1.0  # query = a random centroid + N(0, NOISE²) per coordinate
_TORCH_BLOCK_BYTES = 64 << 20  # torch's k = 1 path scores at most this many bytes at once
FULL_BENCHMARK = "python3 benches/bench_memory.py"


@dataclass(frozen=True)
class Case:
    """One benchmark case: ``batch`` queries against ``num_classes`` centroids, ``k`` nearest."""

    batch: int
    num_classes: int
    k: int = 1


QUICK_CASES = (Case(1, 10_000), Case(64, 10_000), Case(1024, 10_000), Case(64, 10_000, 10))


def parse_cases(text: str) -> list[Case]:
    """``"1x1e3,64x1e4:10"`` -> [Case(1, 1000, 1), Case(64, 10000, 10)] (``:k`` defaults to 1)."""
    cases = []
    for part in text.split(","):
        try:
            shape, _, k = part.strip().lower().partition(":")
            b, n = shape.split("x")
            case = Case(int(float(b)), int(float(n)), int(float(k)) if k else 1)
        except ValueError:
            raise ValueError(f"--shapes: expects BxK or BxK:k items like 64x1e4:10, got {part!r}") from None
        if min(case.batch, case.num_classes, case.k) < 1 or case.k > case.num_classes:
            raise ValueError(f"--shapes: B, K and k must be >= 1 and k <= K, got {part!r}")
        cases.append(case)
    return cases


def cases_argument(text: str) -> list[Case]:
    """``parse_cases`` for an argparse ``type=``: its message is shown as the usage error."""
    try:
        return parse_cases(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--shapes: ")) from None


def format_count(n: int) -> str:
    """10000 -> "1e4"; other counts as digits."""
    exp = len(str(n)) - 1
    return f"1e{exp}" if n == 10**exp and exp >= 3 else str(n)


def format_case(case: Case, with_k: bool = True) -> str:
    """Case(64, 10000, 10) -> "64 × 1e4, k = 10"."""
    text = f"{case.batch} × {format_count(case.num_classes)}"
    return f"{text}, k = {case.k}" if with_k else text


def format_time(seconds: Optional[float], decimals: Optional[int] = None) -> str:
    """Seconds as µs / ms / s with 3 significant figures, or with ``decimals`` decimals in ms
    and s and whole µs (a table with a fixed format); "–" for None."""
    if seconds is None:
        return "–"
    spec, micro = (".3g", ".3g") if decimals is None else (f".{decimals}f", ".0f")
    if seconds < 1e-3:
        return f"{seconds * 1e6:{micro}} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:{spec}} ms"
    return f"{seconds:{spec}} s"


def warm_up(fn: Callable[[], object], warmup_s: float) -> float:
    """Calls ``fn`` untimed once, then again until ``warmup_s`` has passed (some thread pools
    and caches are slow for their first calls); returns the first call's seconds."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    while time.perf_counter() - start < warmup_s:
        fn()
    return first


def time_calls(fn: Callable[[], object], repeats: int, budget_s: float,
               warmup_s: float) -> tuple[float, int]:
    """Warm up, then time ``fn`` call by call: (median seconds, number of timed calls).

    The warm-up is :func:`warm_up`; then ``repeats`` calls, fewer (at least 3) when they would
    take longer than ``budget_s``.
    """
    first = warm_up(fn, warmup_s)
    calls = max(3, min(repeats, int(budget_s / max(first, 1e-9))))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), calls


def make_data(seed: int, batch: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids float32 (K, D) ~ N(0, 1) and queries float32 (B, D): each a random centroid plus
    N(0, 1) noise per coordinate. The same seed gives the same arrays in every process."""
    rng = np.random.default_rng([seed, num_classes])
    centroids = rng.standard_normal((num_classes, DIM), dtype=np.float32)
    owners = rng.integers(0, num_classes, size=batch)
    noise = rng.standard_normal((batch, DIM), dtype=np.float32)
    queries = centroids[owners] + np.float32(_NOISE) * noise
    return centroids, np.ascontiguousarray(queries, dtype=np.float32)


def numpy_search(x: np.ndarray, c: np.ndarray, c_norm_sq: np.ndarray, k: int):
    """GEMM form ‖c‖² − 2 x·c (float32 (B, K)), then argmin (k = 1) or argpartition + sort."""
    scores = c_norm_sq - 2.0 * (x @ c.T)
    if k == 1:
        idx = scores.argmin(axis=1)[:, None]
    else:
        part = np.argpartition(scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)
        idx = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(scores, idx, axis=1), idx


def torch_search(x, c, c_norm_sq, k: int):
    """``torch.addmm`` GEMM form, then ``min`` (k = 1, blocked over K when B·K is large) or
    ``topk(largest=False)``; x float32 (B, D), c float32 (K, D), c_norm_sq float32 (K,)."""
    import torch

    b, n = x.shape[0], c.shape[0]
    if k > 1:
        return torch.addmm(c_norm_sq, x, c.T, alpha=-2.0).topk(k, dim=1, largest=False)
    step = max(1, _TORCH_BLOCK_BYTES // (4 * b))
    best_val, best_idx = torch.addmm(c_norm_sq[:step], x, c[:step].T, alpha=-2.0).min(dim=1)
    for s in range(step, n, step):
        val, idx = torch.addmm(c_norm_sq[s : s + step], x, c[s : s + step].T, alpha=-2.0).min(dim=1)
        better = val < best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + s, best_idx)
    return best_val, best_idx


def core_index(centroids: np.ndarray, kernel: str = "auto") -> Any:
    """``oltr._core.CentroidIndex(centroids, kernel=kernel)``: the Rust core with one engine."""
    import oltr._core as core

    return core.CentroidIndex(centroids, kernel=kernel)


@contextlib.contextmanager
def thread_count(n: int) -> Iterator[None]:
    """``n`` threads for torch, the BLAS pools (threadpoolctl), faiss and the Rust core inside
    the block; the previous settings are restored on exit."""
    from .threads import using_num_threads

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        blas: Any = contextlib.nullcontext()
    else:
        blas = threadpool_limits(limits=n, user_api="blas")
    with using_num_threads(n), blas:
        yield


def _peer_calls(x: np.ndarray, c: np.ndarray, k: int) -> dict[str, Callable[[], object]]:
    import faiss
    import torch

    c_t, x_t = torch.from_numpy(c), torch.from_numpy(x)
    c_norm_t = (c_t * c_t).sum(dim=1)
    c_norm = c_norm_t.numpy()
    flat = faiss.IndexFlatL2(c.shape[1])
    flat.add(c)
    return {
        "numpy": lambda: numpy_search(x, c, c_norm, k),
        "torch": lambda: torch_search(x_t, c_t, c_norm_t, k),
        "faiss": lambda: flat.search(x, k),
    }


def run_quick(cases: Sequence[Case] = QUICK_CASES, threads: Optional[int] = None,
              repeats: int = 20, budget_s: float = 0.5, warmup_s: float = 0.2,
              seed: int = 0, log: Callable[[str], None] = lambda _msg: None) -> list[dict]:
    """Median seconds per method for each case: a list of {"case", "kernel", "times"} dicts,
    ``times`` mapping "rust", "numpy", "torch", "faiss" to seconds."""
    from .threads import get_num_threads

    out = []
    with thread_count(threads or get_num_threads()):
        for case in cases:
            c, x = make_data(seed, case.batch, case.num_classes)
            index = core_index(c)
            calls: dict[str, Callable[[], object]] = {
                "rust": functools.partial(index.search, x, case.k), **_peer_calls(x, c, case.k)}
            times = {}
            for name, fn in calls.items():
                times[name] = time_calls(fn, repeats, budget_s, warmup_s)[0]
                log(f"{format_case(case)}: {name} {format_time(times[name])}")
            out.append({"case": case, "kernel": index.kernel, "times": times})
    return out


def format_quick(results: Sequence[dict], threads: int) -> str:
    """The quick run as a Markdown table (rust ÷ fastest peer > 1 = rust faster)."""
    lines = [f"Nearest-centroid search, D = {DIM}, {threads} thread(s), median per call:", "",
             "| B × K, k | rust engine | rust | numpy | torch | faiss | rust ÷ fastest peer |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        t = r["times"]
        best = min(("numpy", "torch", "faiss"), key=t.__getitem__)
        lines.append(f"| {format_case(r['case'])} | {r['kernel']} | "
                     + " | ".join(format_time(t[m]) for m in ("rust", "numpy", "torch", "faiss"))
                     + f" | {t[best] / t['rust']:.2f}× ({best}) |")
    lines += ["", f"Every engine, peers restricted to each engine's instruction set, this machine's "
              f"floors and load checks: `{FULL_BENCHMARK}` in the source tree."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``oltr bench [--shapes 1x1e4,64x1e4:10] [--threads N] [--quick]``; prints a table."""
    parser = argparse.ArgumentParser(
        prog="oltr bench",
        description="Quick benchmark of oltr's nearest-centroid search (Rust core, engine 'auto') "
        f"against numpy, torch and faiss. The full benchmark: {FULL_BENCHMARK} (source tree).")
    parser.add_argument("--shapes", type=cases_argument, default=list(QUICK_CASES),
                        help="comma-separated BxK or BxK:k items (default: "
                        + ",".join(f"{c.batch}x{format_count(c.num_classes)}" + (f":{c.k}" if c.k > 1 else "")
                                   for c in QUICK_CASES) + ")")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every library (default: oltr.get_num_threads())")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter timings (a smoke test)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP pools sleep (if not yet loaded)
    from .threads import get_num_threads

    threads = args.threads or get_num_threads()
    repeats, budget, warmup = (5, 0.1, 0.05) if args.quick else (20, 0.5, 0.2)
    results = run_quick(args.shapes, threads, repeats, budget, warmup,
                        log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_quick(results, threads), end="")
    return 0
