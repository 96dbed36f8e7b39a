"""Benchmark of nearest-centroid search: oltr's Rust core against its peers (issue 2).

For each shape (B queries, K centroids, D = 512, k = 1) it times, in one process:

* ``official``    — the official OLTR formula: expand to (B, K, D), ``torch.norm``, sort
  (only where the (B, K, D) tensor fits in 4 GB);
* ``torch``       — ``addmm`` GEMM form + ``min`` (blocked over K when B·K is large);
* ``numpy``       — GEMM form + ``argmin``;
* ``faiss``       — ``faiss.IndexFlatL2.search`` (exact search, float32 distances);
* ``rust``        — ``oltr.CentroidIndex(c, backend="rust").search`` (index built once,
  outside the timing; exact distances);
* ``sgemm``       — ``torch.mm`` of the same (B, D) × (D, K) shape: the yardstick;
* ``faiss-ivf`` / ``faiss-hnsw`` — oltr's approximate faiss backend (with exact re-rank of
  its candidates) and its recall@1 against exact search.

Each method is warmed up, then timed call by call; the table reports medians. Thread pools of
torch, numpy's BLAS (threadpoolctl), FAISS and the Rust core are all set to the same count.
``run_benchmark`` returns rows; ``format_markdown`` renders them; ``main`` is the CLI used by
``benches/bench_memory.py`` and ``oltr bench``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = [
    "DEFAULT_SHAPES",
    "BenchRow",
    "floor_seconds",
    "format_markdown",
    "machine_info",
    "main",
    "parse_shapes",
    "run_benchmark",
    "summarize",
]

DIM = 512
DEFAULT_SHAPES = tuple((b, k) for k in (1_000, 10_000, 100_000) for b in (1, 64, 1024))
EXACT_PEERS = ("official", "torch", "numpy", "faiss")
_OFFICIAL_LIMIT_BYTES = 4 << 30
_TORCH_BLOCK_BYTES = 64 << 20
_NOISE = 1.0  # query = a random centroid + N(0, NOISE²) per coordinate


@dataclass
class BenchRow:
    """One timed method at one shape. ``seconds`` is None when the method was skipped."""

    batch: int
    num_classes: int
    method: str
    seconds: Optional[float]
    repeats: int = 0
    recall_at_1: Optional[float] = None
    note: str = ""

    @property
    def queries_per_second(self) -> Optional[float]:
        return None if not self.seconds else self.batch / self.seconds


@dataclass
class _Shape:
    centroids: np.ndarray
    queries: np.ndarray


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """"1x1000,64x1e4" -> [(1, 1000), (64, 10000)]."""
    shapes = []
    for part in text.split(","):
        try:
            b, k = part.lower().split("x")
            shapes.append((int(float(b)), int(float(k))))
        except ValueError:
            raise ValueError(f"--shapes expects BxK pairs like 64x1e4, got {part!r}") from None
    return shapes


def _time_calls(fn: Callable[[], object], repeats: int, budget_s: float,
                warmup_s: float) -> tuple[float, int]:
    """Warm up, then time ``fn`` call by call; median seconds and the number of timed calls.

    Warm-up runs at least two calls and lasts ``warmup_s``: some pools stay slow for their
    first hundred or so calls (numpy's OpenBLAS took ~12 ms per 1×1e3 call for ~1 s here).
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    fn()
    while time.perf_counter() - start < warmup_s:
        fn()
    calls = max(3, min(repeats, int(budget_s / max(first, 1e-9))))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), calls


def _official(x, c):
    import torch

    b, k = x.shape[0], c.shape[0]
    dist = torch.norm(x.unsqueeze(1).expand(-1, k, -1) - c.unsqueeze(0).expand(b, -1, -1), 2, 2)
    return torch.sort(dist, dim=1)


def _torch_addmm_min(x, c, c_norm_sq):
    import torch

    b, k = x.shape[0], c.shape[0]
    step = max(1, _TORCH_BLOCK_BYTES // (4 * b))
    if step >= k:
        return torch.addmm(c_norm_sq, x, c.T, alpha=-2.0).min(dim=1)
    best_val = best_idx = None
    for s in range(0, k, step):
        val, idx = torch.addmm(c_norm_sq[s : s + step], x, c[s : s + step].T, alpha=-2.0).min(dim=1)
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = val < best_val
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx + s, best_idx)
    return best_val, best_idx


def _numpy_gemm_argmin(x, c, c_norm_sq):
    scores = c_norm_sq - 2.0 * (x @ c.T)
    idx = scores.argmin(axis=1)
    return scores[np.arange(len(x)), idx], idx


def _make_shape(rng, b_max: int, k: int) -> _Shape:
    centroids = rng.standard_normal((k, DIM), dtype=np.float32)
    owners = rng.integers(0, k, size=b_max)
    noise = rng.standard_normal((b_max, DIM), dtype=np.float32)
    queries = centroids[owners] + np.float32(_NOISE) * noise
    return _Shape(centroids, np.ascontiguousarray(queries, dtype=np.float32))


@contextlib.contextmanager
def _thread_count(n: int):
    """Same thread count for torch, BLAS (threadpoolctl), faiss and the Rust core; restored
    on exit."""
    from .threads import using_num_threads

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        blas = contextlib.nullcontext()
    else:
        blas = threadpool_limits(limits=n, user_api="blas")
    with using_num_threads(n), blas:
        yield


def machine_info(threads: int) -> dict:
    """Versions, CPU and thread settings, recorded with the table."""
    import faiss
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "logical cores": os.cpu_count(),
        "threads (torch, BLAS, faiss, rust)": threads,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "faiss": faiss.__version__,
    }
    try:
        from threadpoolctl import threadpool_info

        info["BLAS (threadpoolctl)"] = "; ".join(
            f"{p.get('internal_api')} {p.get('version')} {p.get('num_threads')} thr"
            for p in threadpool_info()
        )
    except ImportError:
        info["BLAS (threadpoolctl)"] = "threadpoolctl not installed: pools not capped"
    try:
        import oltr._core as core

        info["oltr._core"] = f"{core.__version__} ({core.build_profile})"
    except ImportError:
        info["oltr._core"] = "not built"
    return info


def _rust_index(centroids):
    try:
        from oltr.memory import CentroidIndex

        return CentroidIndex(centroids, backend="rust"), ""
    except ImportError as err:
        return None, f"skipped: {err}"


def run_benchmark(
    shapes: Sequence[tuple[int, int]] = DEFAULT_SHAPES,
    repeats: int = 30,
    budget_s: float = 1.5,
    warmup_s: float = 1.0,
    threads: Optional[int] = None,
    approx: Sequence[str] = ("ivf",),
    seed: int = 0,
    log: Optional[Callable[[str], None]] = None,
) -> list[BenchRow]:
    """Time every method at every (B, K) shape (D = 512, k = 1). Returns one row per method.

    repeats: most timed calls per method (at least 3; fewer when a call is slower than
    ``budget_s / repeats``); each method first warms up for ``warmup_s``. approx: approximate faiss indexes to include ("ivf", "hnsw");
    their recall@1 is measured against exact search (faiss IndexFlatL2) on all the queries
    generated for a K (as many as its largest B), and repeated on each row of that K.
    """
    from .threads import get_num_threads

    threads = threads or get_num_threads()
    with _thread_count(threads):
        return _run(shapes, repeats, budget_s, warmup_s, approx, seed, log or (lambda _msg: None))


def _run(shapes, repeats, budget_s, warmup_s, approx, seed, log) -> list[BenchRow]:
    import faiss
    import torch

    from oltr.memory import CentroidIndex, FaissOptions

    rng = np.random.default_rng(seed)
    rows: list[BenchRow] = []
    by_k: dict[int, list[int]] = {}
    for b, k in shapes:
        by_k.setdefault(k, []).append(b)
    for k, batches in by_k.items():
        data = _make_shape(rng, max(batches), k)
        c_np = data.centroids
        c_t = torch.from_numpy(c_np)
        c_norm_t = (c_t * c_t).sum(dim=1)
        c_norm_np = c_norm_t.numpy()
        flat = faiss.IndexFlatL2(DIM)
        flat.add(c_np)
        rust, rust_note = _rust_index(c_np)
        approx_indexes = {}
        for kind in approx:
            start = time.perf_counter()
            approx_indexes[kind] = CentroidIndex(
                c_np, backend="faiss", faiss_options=FaissOptions(index=kind)
            )
            log(f"K={k}: built faiss-{kind} in {time.perf_counter() - start:.1f} s")
        # recall@1 on all generated queries (max B of this K), the same for every B
        exact_all = flat.search(data.queries, 1)[1][:, 0]
        recall = {
            f"faiss-{kind}": float(np.mean(index.search(data.queries, 1)[1][:, 0] == exact_all))
            for kind, index in approx_indexes.items()
        }
        for b in sorted(batches):
            x_np = np.ascontiguousarray(data.queries[:b])
            x_t = torch.from_numpy(x_np)
            methods: dict[str, tuple[Optional[Callable], str]] = {
                "official": (lambda: _official(x_t, c_t), "")
                if 4 * b * k * DIM <= _OFFICIAL_LIMIT_BYTES
                else (None, f"skipped: needs {4 * b * k * DIM / 1e9:.0f} GB"),
                "torch": (lambda: _torch_addmm_min(x_t, c_t, c_norm_t), ""),
                "numpy": (lambda: _numpy_gemm_argmin(x_np, c_np, c_norm_np), ""),
                "faiss": (lambda: flat.search(x_np, 1), ""),
                "rust": ((lambda: rust.search(x_np, 1)) if rust else None, rust_note),
                "sgemm": (lambda: torch.mm(x_t, c_t.T), ""),
            }
            for kind, index in approx_indexes.items():
                methods[f"faiss-{kind}"] = ((lambda index=index: index.search(x_np, 1)), "")
            for name, (fn, note) in methods.items():
                if fn is None:
                    rows.append(BenchRow(b, k, name, None, note=note))
                    continue
                seconds, calls = _time_calls(fn, repeats, budget_s, warmup_s)
                rows.append(BenchRow(b, k, name, seconds, calls, recall.get(name), note))
                log(f"B={b:5d} K={k:7d} {name:11s} {seconds * 1e3:10.3f} ms  ({calls} calls)")
        del data, flat, rust, approx_indexes
    return rows


def _fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _fmt_k(k: int) -> str:
    exp = int(round(np.log10(k))) if k > 0 else 0
    return f"1e{exp}" if 10**exp == k else str(k)


def floor_seconds(batch: int, num_classes: int, dim: int = DIM) -> float:
    """The machine floor of PERF_BASELINE.md: max(bytes of C / bandwidth, 2·B·K·D / peak).

    Uses that file's measured limits of the 2-core Zen 4 box (116 GB/s from L2, 145 GB/s
    from L3, 31 GB/s from DRAM, 210 GFLOP/s sgemm), for float32 centroids.
    """
    c_bytes = 4 * num_classes * dim
    bandwidth = 116e9 if c_bytes <= (2 << 20) else 145e9 if c_bytes <= (32 << 20) else 31e9
    return max(c_bytes / bandwidth, 2.0 * batch * num_classes * dim / 210e9)


def summarize(rows: Sequence[BenchRow]) -> list[dict]:
    """One dict per shape: times by method, rust's queries/s and its ratios."""
    shapes: dict[tuple[int, int], dict] = {}
    for row in rows:
        entry = shapes.setdefault((row.batch, row.num_classes), {"rows": {}})
        entry["rows"][row.method] = row
    out = []
    for (b, k), entry in shapes.items():
        by = entry["rows"]
        peers = [(by[m].seconds, m) for m in EXACT_PEERS if m in by and by[m].seconds]
        fastest = min(peers) if peers else (None, "")
        rust = by.get("rust")
        rust_s = rust.seconds if rust else None
        sgemm = by.get("sgemm")
        official = by.get("official")
        out.append({
            "batch": b,
            "num_classes": k,
            "rows": by,
            "fastest_peer": fastest[1],
            "rust_qps": b / rust_s if rust_s else None,
            "rust_vs_fastest_peer": fastest[0] / rust_s if rust_s and fastest[0] else None,
            "rust_vs_sgemm": sgemm.seconds / rust_s if rust_s and sgemm and sgemm.seconds else None,
            "rust_vs_official": official.seconds / rust_s
            if rust_s and official and official.seconds else None,
            "rust_over_floor": rust_s / floor_seconds(b, k) if rust_s else None,
        })
    return out


def _target_lines(summary: Sequence[dict]) -> list[str]:
    """Issue 2's targets, each with the shapes that miss it in this run."""
    def shapes(pred, key):
        return [f"{s['batch']} × {_fmt_k(s['num_classes'])} ({s[key]:.2f}×)"
                for s in summary if s[key] is not None and pred(s)]

    def line(text, misses):
        return f"- {text}: " + ("met at every shape measured" if not misses
                                else "missed at " + ", ".join(misses))

    compute_bound = [s for s in summary if s["batch"] >= 1024]
    unmeasured = [f"{s['batch']} × {_fmt_k(s['num_classes'])}" for s in summary
                  if s["rust_qps"] is None]
    return [
        "",
        "Targets of issue 2, checked on this run"
        + (f" (rust not measured at {', '.join(unmeasured)}):" if unmeasured else ":"),
        "",
        line("rust ≥ 1.2× the fastest peer", shapes(lambda s: s["rust_vs_fastest_peer"] < 1.2,
                                                     "rust_vs_fastest_peer")),
        line("rust never below 1.0× the fastest peer",
             shapes(lambda s: s["rust_vs_fastest_peer"] < 1.0, "rust_vs_fastest_peer")),
        line("rust ≥ 0.9× sgemm throughput at compute-bound shapes (B = 1024)",
             shapes(lambda s: s in compute_bound and s["rust_vs_sgemm"] < 0.9, "rust_vs_sgemm")),
        line("B = 1 within 1.3× of the floor",
             shapes(lambda s: s["batch"] == 1 and s["rust_over_floor"] > 1.3, "rust_over_floor")),
        line("rust ≥ 100× the official method at B ≥ 64 (where it runs)",
             shapes(lambda s: s["batch"] >= 64 and s["rust_vs_official"] < 100, "rust_vs_official")),
    ]


def format_markdown(rows: Sequence[BenchRow], command: str = "", info: Optional[dict] = None) -> str:
    """The benchmark as Markdown: a times table, rust's ratios, approximate-search recall."""
    summary = summarize(rows)
    methods = [m for m in ("official", "torch", "numpy", "faiss", "rust", "sgemm")
               if any(r.method == m for r in rows)]
    approx = sorted({r.method for r in rows if r.method.startswith("faiss-")})
    lines = ["# Benchmarks: nearest centroid (D = 512, k = 1)", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    if info:
        lines += ["Machine and settings:", ""]
        lines += [f"- {key}: {value}" for key, value in info.items()]
        lines += [""]
    lines += [
        "Median time per call (lower is better). Peers: `official` = expand + `torch.norm` + "
        "sort (OLTR's code), `torch` = addmm + min, `numpy` = GEMM + argmin, `faiss` = "
        "IndexFlatL2; `rust` = `oltr.CentroidIndex(c, backend=\"rust\").search(x, 1)` "
        "(index built once, exact distances, input validation included); `sgemm` = "
        "`torch.mm` of the same shape, the yardstick. Queries are a random centroid plus "
        "N(0, 1) noise per coordinate. The machine may be shared with other work while this "
        "runs: timings are noisy (µs-scale rows most of all); read the ratios, and rerun "
        "before trusting a single figure.",
        "",
        "| B × K | " + " | ".join(methods) + " | rust queries/s | rust ÷ fastest peer | "
        "rust ÷ sgemm | rust ÷ official | rust time ÷ floor |",
        "|---|" + "---|" * (len(methods) + 5),
    ]

    def ratio(value):
        return "–" if value is None else f"{value:.2f}×"

    for s in summary:
        by = s["rows"]
        cells = [_fmt_time(by[m].seconds) if m in by else "–" for m in methods]
        qps = "–" if s["rust_qps"] is None else f"{s['rust_qps']:,.0f}"
        peer = ratio(s["rust_vs_fastest_peer"])
        if s["fastest_peer"] and s["rust_vs_fastest_peer"] is not None:
            peer += f" ({s['fastest_peer']})"
        lines.append(
            f"| {s['batch']} × {_fmt_k(s['num_classes'])} | " + " | ".join(cells)
            + f" | {qps} | {peer} | {ratio(s['rust_vs_sgemm'])} | {ratio(s['rust_vs_official'])}"
            + f" | {ratio(s['rust_over_floor'])} |"
        )
    lines += [
        "",
        "Ratios are speed-ups of rust (> 1 = rust faster): time of the other method ÷ time of "
        "rust. \"rust ÷ sgemm\" is rust's throughput as a fraction of a bare sgemm of the same "
        "shape. \"rust time ÷ floor\" divides rust's time by the floor of PERF_BASELINE.md, "
        "max(bytes of float32 C / bandwidth, 2·B·K·D / 210 GFLOP/s), from that file's measured "
        "limits of this 2-core box (the Rust core may store C more compactly than float32).",
    ]
    lines += _target_lines(summary)
    notes = sorted({f"{r.method} at {r.batch} × {_fmt_k(r.num_classes)}: {r.note}"
                    for r in rows if r.note})
    if notes:
        lines += ["", "Skipped:", ""] + [f"- {n}" for n in notes]
    if approx:
        lines += [
            "",
            "## Approximate search (oltr faiss backend, candidates re-ranked exactly)",
            "",
            "| B × K | " + " | ".join(f"{a} time | {a} recall@1" for a in approx)
            + " | exact faiss |",
            "|---|" + "---|" * (2 * len(approx) + 1),
        ]
        for s in summary:
            by = s["rows"]
            cells = []
            for a in approx:
                row = by.get(a)
                cells += [_fmt_time(row.seconds if row else None),
                          "–" if not row or row.recall_at_1 is None else f"{row.recall_at_1:.3f}"]
            exact = by.get("faiss")
            lines.append(f"| {s['batch']} × {_fmt_k(s['num_classes'])} | " + " | ".join(cells)
                         + f" | {_fmt_time(exact.seconds if exact else None)} |")
        lines += ["", "recall@1: fraction of the queries generated for that K (its largest B) whose "
                  "nearest centroid matches exact search. Defaults: IVF nlist = round(4·√K) capped at K/39, nprobe = 16; HNSW "
                  "M = 32, efConstruction = 80, efSearch = 64; 16 extra candidates re-ranked."]
    return "\n".join(lines) + "\n"


def _load_average() -> str:
    """The 1-minute load average (other work on the machine), or "n/a"."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "n/a"


def _passive_openmp() -> str:
    """Ask OpenMP pools to sleep, not spin, when idle; effective only before they start."""
    if "torch" in sys.modules or "faiss" in sys.modules:
        return " (torch/faiss were loaded before the benchmark: whatever was set then)"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python benches/bench_memory.py [--quick] [--shapes 1x1e3,...] [--write FILE]``.

    ``argv`` None reads ``sys.argv`` (script use); ``oltr bench`` passes its own arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (3-5 per method)")
    parser.add_argument("--shapes", type=parse_shapes, default=list(DEFAULT_SHAPES),
                        help="comma-separated BxK pairs, e.g. 1x1e3,64x1e5 (default: 3 × 3 grid)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every library (default: oltr.get_num_threads())")
    parser.add_argument("--approx", default="ivf",
                        help="approximate faiss indexes to include: ivf, hnsw, both or none")
    parser.add_argument("--write", metavar="FILE", help="write the Markdown table to FILE")
    args = parser.parse_args(argv)
    omp_note = _passive_openmp()
    load_start = _load_average()
    approx = {"none": (), "both": ("ivf", "hnsw")}.get(args.approx, tuple(
        a for a in args.approx.split(",") if a))
    repeats, budget, warmup = (5, 0.4, 0.3) if args.quick else (30, 1.5, 1.0)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rows = run_benchmark(args.shapes, repeats=repeats, budget_s=budget, warmup_s=warmup,
                         threads=args.threads,
                         approx=approx, log=log)
    import oltr.memory as memory

    info = machine_info(args.threads or memory.get_num_threads())
    info["OMP_WAIT_POLICY"] += omp_note
    info["load average (1 min) at start / end"] = f"{load_start} / {_load_average()}"
    if argv is None:  # run as a script
        command = " ".join(["python3", *sys.argv])
    else:  # called by `oltr bench`
        command = " ".join(["oltr bench", *argv])
    text = format_markdown(rows, command=command, info=info)
    print(text)
    if args.write:
        with open(args.write, "w") as f:
            f.write(text)
        print(f"wrote {args.write}", file=sys.stderr)
    return 0
