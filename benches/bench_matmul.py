"""float32 matrix products of the inference head: ``oltr._core.matmul`` vs numpy and torch.mm.

Per shape (M x K) · (K x N), all in one process, on the same float32 arrays:

* ``oltr``: ``oltr._core.matmul(a, b, out)`` (batch-invariant: fused multiply-adds in k
  order), ``kernel=--kernel``, on ``--threads`` threads (``oltr._core.set_num_threads``).
* ``numpy``: ``np.matmul(a, b, out=out)`` (numpy's BLAS, its own threads).
* ``torch.mm``: ``torch.mm(a, b, out=out)`` on tensors sharing the arrays' memory, on
  ``torch.set_num_threads(--threads)`` threads.

The shapes are those of the head: scores ``x @ W^T`` (b = the transpose of a (N, K) weight,
made contiguous) and read-outs ``softmax @ C`` (b = the (K, N) centroids). The two 205 MB
cases read b from DRAM on every call (it is larger than any cache). Before timing, each
method's result is checked against the float64 product within the float32 rounding bound
``K·2^-23·(|a| @ |b|)``.

Times are medians of ``--repeats`` calls (fewer for the 205 MB cases), taken in ``--rounds``
interleaved rounds (each method keeps its best round median) after a warm-up call. Each
method's calls start after a ``--pause`` of idle time: OpenBLAS threads busy-wait for a while
after a call and would otherwise take the second core from whichever method runs next. The
table gives each time and oltr's ratio to numpy and torch.mm, and the target of each shape;
the script exits 1 when a target is missed (``--no-check`` only reports).

Run: ``python3 benches/bench_matmul.py [--threads 2] [--shapes 1x512x1000 ...] [--kernel auto]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads sleep

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_seconds, write_section  # noqa: E402  (benches/ helpers)
from oltr import _core  # noqa: E402
from oltr._platform import cpu_info  # noqa: E402

SECTION_TITLE = "# Benchmark: float32 matmul of the head's products"


@dataclass(frozen=True)
class Shape:
    """(m x k) · (k x n); ``target``: "numpy", "min" (min of numpy and torch.mm), a ratio of
    torch.mm's time (float) or an absolute limit in ms ("10ms")."""

    m: int
    k: int
    n: int
    target: str

    @property
    def name(self) -> str:
        return f"{self.m}x{self.k}x{self.n}"


SHAPES = (
    Shape(1, 512, 1000, "numpy"),
    Shape(1, 1000, 512, "numpy"),
    Shape(10, 512, 100_000, "10ms"),
    Shape(10, 100_000, 512, "10ms"),
    Shape(64, 512, 1000, "0.8"),
    Shape(64, 1000, 512, "0.8"),
    Shape(1024, 512, 1000, "min"),
    Shape(1024, 1000, 512, "min"),
    Shape(1024, 512, 10_000, "min"),
)
BIG_BYTES = 64 << 20  # b above this: fewer calls per round


def operands(shape: Shape, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """a (m, k) and b (k, n), float32 ~N(0, 1); b of a scores shape (k < n) is the transpose
    of a (n, k) weight made contiguous."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((shape.m, shape.k), dtype=np.float32)
    if shape.k < shape.n:
        b = np.ascontiguousarray(rng.standard_normal((shape.n, shape.k), dtype=np.float32).T)
    else:
        b = rng.standard_normal((shape.k, shape.n), dtype=np.float32)
    return a, b


def methods(a: np.ndarray, b: np.ndarray, kernel: str) -> dict[str, tuple[Callable[[], object], np.ndarray]]:
    outs = {name: np.empty((a.shape[0], b.shape[1]), np.float32) for name in ("oltr", "numpy", "torch.mm")}
    ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(outs["torch.mm"])
    return {
        "oltr": (lambda: _core.matmul(a, b, outs["oltr"], kernel=kernel), outs["oltr"]),
        "numpy": (lambda: np.matmul(a, b, out=outs["numpy"]), outs["numpy"]),
        "torch.mm": (lambda: torch.mm(ta, tb, out=tout), outs["torch.mm"]),
    }


def check(shape: Shape, a: np.ndarray, b: np.ndarray, results: dict[str, np.ndarray]) -> None:
    exact = a.astype(np.float64) @ b.astype(np.float64)
    bound = shape.k * 2.0**-23 * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-30
    for name, out in results.items():
        excess = float(np.max(np.abs(out - exact) / bound))
        if excess > 1.0:
            raise SystemExit(f"{shape.name}: {name} differs from the float64 product beyond the float32 bound "
                             f"({excess:.3g} x the bound)")


def measure(shape: Shape, kernel: str, repeats: int, rounds: int, pause: float) -> dict[str, float]:
    a, b = operands(shape)
    fns = methods(a, b, kernel)
    for fn, _ in fns.values():
        fn()  # warm-up: pools, caches
    check(shape, a, b, {name: out for name, (_, out) in fns.items()})
    n = max(3, repeats // 10) if b.nbytes > BIG_BYTES else repeats
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, (fn, _) in fns.items():
            time.sleep(pause)
            t = median_seconds(fn, n)
            best[name] = min(best.get(name, t), t)
    return best


def verdict(shape: Shape, t: dict[str, float]) -> tuple[str, bool]:
    """(the target in words, whether oltr met it)."""
    ours = t["oltr"]
    if shape.target == "numpy":
        return "<= numpy", ours <= t["numpy"]
    if shape.target == "min":
        return "<= min(numpy, torch.mm)", ours <= min(t["numpy"], t["torch.mm"])
    if shape.target.endswith("ms"):
        limit = float(shape.target[:-2])
        return f"<= {limit:g} ms", ours * 1e3 <= limit
    ratio = float(shape.target)
    return f"<= {ratio:g} x torch.mm", ours <= ratio * t["torch.mm"]


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 1.0 else f"{seconds:.2f} s"


def table(rows: Sequence[tuple[Shape, dict[str, float]]]) -> tuple[str, list[str]]:
    lines = [
        "| M x K x N | oltr | numpy | torch.mm | oltr / numpy | oltr / torch.mm | target | met |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    misses = []
    for shape, t in rows:
        target, met = verdict(shape, t)
        if not met:
            misses.append(f"{shape.name}: {target}")
        lines.append(
            f"| {shape.name} | {fmt(t['oltr'])} | {fmt(t['numpy'])} | {fmt(t['torch.mm'])} "
            f"| {t['oltr'] / t['numpy']:.2f} | {t['oltr'] / t['torch.mm']:.2f} | {target} "
            f"| {'yes' if met else 'NO'} |"
        )
    return "\n".join(lines), misses


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="oltr and torch threads (default 2)")
    parser.add_argument("--kernel", default="auto", help="oltr kernel= (default auto)")
    parser.add_argument("--shapes", nargs="*", default=None,
                        help=f"MxKxN shapes (default: {' '.join(s.name for s in SHAPES)})")
    parser.add_argument("--repeats", type=int, default=50, help="calls per round (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--pause", type=float, default=0.3,
                        help="idle seconds before each method's calls (default 0.3)")
    parser.add_argument("--no-check", action="store_true", help="report misses without exit status 1")
    parser.add_argument("--write", metavar="FILE", help="replace this benchmark's section of FILE")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or args.rounds < 1 or args.pause < 0:
        parser.error("--threads, --repeats and --rounds must be >= 1, --pause >= 0")
    by_name = {s.name: s for s in SHAPES}
    names = args.shapes or list(by_name)
    unknown = [name for name in names if name not in by_name]
    if unknown:
        parser.error(f"unknown shape(s) {unknown}; choose from {list(by_name)}")
    _core.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rows = [(by_name[name], measure(by_name[name], args.kernel, args.repeats, args.rounds, args.pause))
            for name in names]
    text, misses = table(rows)
    try:
        load = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        load = "n/a"
    command = "python3 benches/bench_matmul.py " + " ".join(sys.argv[1:] if argv is None else argv)
    title = f"{SECTION_TITLE} ({cpu_info().model_name})"
    lines = [title, "", "Command:", "", "```", command.rstrip(), "```", "",
             f"- cpu: {cpu_info().label}",
             f"- oltr kernel={args.kernel}, {args.threads} thread(s); torch {torch.__version__} "
             f"({args.threads} thread(s)); numpy {np.__version__}; load average at the end {load}",
             f"- medians of {args.repeats} calls, best of {args.rounds} interleaved rounds, "
             f"{args.pause:g} s pause before each method", "",
             "`oltr` = `oltr._core.matmul` (every entry one chain of fused multiply-adds in k order: "
             "a row's bits do not depend on its batch); the head's products use it at float32 CPU "
             "inference (`oltr.nn._products`). The two 205 MB shapes read b from memory on every call. "
             "The `target` column holds the kernel's own design goals, not an issue's targets.", "",
             text, ""]
    lines += (["Missed in this run: " + "; ".join(misses), ""] if misses else ["Every target met in this run.", ""])
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(args.write, section, title)
        print(f"wrote the section '{title}' of {args.write}", file=sys.stderr)
    return 1 if misses and not args.no_check else 0


if __name__ == "__main__":
    sys.exit(main())
