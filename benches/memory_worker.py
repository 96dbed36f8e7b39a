"""The measuring half of ``bench_memory.py``: runs inside one subprocess per instruction-set group.

The parent sets the group's environment (OPENBLAS_CORETYPE, MKL_ENABLE_INSTRUCTIONS,
ATEN_CPU_CAPABILITY, FAISS_OPT_LEVEL) before this process imports numpy, torch and faiss, so
the peers run the instruction set the group names; ``run_group`` then times the group's engines
and peers case by case and returns plain JSON-ready data:

* ``times``: {"case": [B, K, k], "method": name, "seconds": median, "calls": n} rows; methods are
  the peers "numpy", "torch", "faiss", the engines by name ("auto", "avx2-f32", ...), and in the
  group that measures floors, once per (B, K) shape, "torch.mm" (the FLOP yardstick, same
  (B, D) × (D, K) product) and "read" (a streaming read of the bytes ``auto`` stores, at B = 1);
* ``libraries``: which BLAS kernel each library really loaded (threadpoolctl), torch's ATen
  CPU capability, the faiss module, the environment it ran under;
* ``under_load`` / ``hog``: the load checks, where the spec asks for them.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

#: engine names the core had before it could list them (probed when available_kernels is absent).
KNOWN_ENGINES = ("avx512-bf16", "avx512-f32", "avx2-f32", "portable-f32")
#: environment variables that choose a library's instruction set; recorded with every group.
ISA_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "MKL_ENABLE_INSTRUCTIONS",
                 "ATEN_CPU_CAPABILITY", "FAISS_OPT_LEVEL", "OMP_WAIT_POLICY")
PEERS = ("numpy", "torch", "faiss")


def available_engines() -> list[str]:
    """Engine names this CPU runs: ``available_kernels()`` of ``oltr.memory`` or ``oltr._core``
    where the core has it; else each known name that builds an index reporting that name."""
    import oltr._core as core
    import oltr.memory as memory

    for owner in (memory, core):
        listing = getattr(owner, "available_kernels", None)
        if listing is not None:
            return [name for name in listing() if name != "auto"]
    import numpy as np

    probe = np.ones((2, 8), np.float32)
    found = []
    for name in KNOWN_ENGINES:
        try:
            if core.CentroidIndex(probe, kernel=name).kernel == name:
                found.append(name)
        except ValueError:
            pass
    return found


def stored_bytes(index: Any, kernel: str, num_classes: int, dim: int) -> tuple[int, str]:
    """Bytes of the packed centroids the engine reads per query, and where the figure comes from:
    the index's ``packed_nbytes`` if it has one, else the element size its name implies."""
    nbytes = getattr(index, "packed_nbytes", None)
    if isinstance(nbytes, int) and nbytes > 0:
        return nbytes, "index.packed_nbytes"
    size = 2 if ("bf16" in kernel or "f16" in kernel) else 1 if ("i8" in kernel or "int8" in kernel) else 4
    return size * num_classes * dim, f"{size} byte(s) per element, from the engine name"


def read_floor(nbytes: int, threads: int, timer: Callable[[Callable[[], object]], float]) -> float:
    """Seconds of the fastest streaming read of ``nbytes`` this process manages: numpy's
    bitwise-or reduction over uint64 words on one thread, and split over ``threads`` threads."""
    import numpy as np

    words = np.ones(max(1, nbytes // 8), np.uint64)
    best = timer(lambda: np.bitwise_or.reduce(words))
    if threads > 1:
        parts = np.array_split(words, threads)
        with ThreadPoolExecutor(threads) as pool:
            best = min(best, timer(lambda: list(pool.map(np.bitwise_or.reduce, parts))))
    return best


def library_info() -> dict:
    """What each library really runs in this process (call after the first BLAS calls)."""
    import faiss
    import torch

    info: dict[str, Any] = {"env": {v: os.environ.get(v) for v in ISA_VARIABLES}}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    else:
        info["blas"] = [
            {"library": os.path.basename(p.get("filepath", "")), "api": p.get("internal_api"),
             "architecture": p.get("architecture"), "version": p.get("version"),
             "threads": p.get("num_threads")}
            for p in threadpool_info() if p.get("user_api") == "blas"
        ]
    info["torch"] = {"version": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                     "mkl": torch.backends.mkl.is_available(), "threads": torch.get_num_threads()}
    info["faiss"] = {"version": faiss.__version__,
                     "module": sorted(m for m in sys.modules if m.startswith("faiss.swigfaiss"))}
    return info


def run_group(spec: dict, log: Callable[[str], None]) -> dict:
    """Time ``spec["engines"]`` and the peers at ``spec["cases"]`` in this process (see module doc)."""
    import numpy as np

    from oltr.memory.bench import Case, thread_count, time_calls

    threads = spec["threads"]
    out: dict[str, Any] = {"group": spec["group"], "times": [], "kernels": {}, "notes": [],
                           "load_start": os.getloadavg()[0]}

    def timer(fn: Callable[[], object]) -> float:
        return time_calls(fn, spec["repeats"], spec["budget_s"], spec["warmup_s"])[0]

    with thread_count(threads):
        cases = [Case(*c) for c in spec["cases"]]
        for num_classes in sorted({c.num_classes for c in cases}):
            _run_classes(spec, [c for c in cases if c.num_classes == num_classes], out, timer, log)
        out["libraries"] = library_info()
        if spec.get("load_checks"):
            out["under_load"] = under_load(spec, log)
            out["hog"] = with_hog(spec, timer, log)
    out["libraries"]["numpy"] = np.__version__
    out["load_end"] = os.getloadavg()[0]
    return out


def _methods(spec: dict, case: Any, c: Any, x: Any, indexes: dict, peers: Callable, yardstick: bool) -> dict:
    import torch

    methods = dict(peers(x, case.k))
    for name, index in indexes.items():
        methods[name] = functools.partial(index.search, x, case.k)
    if yardstick:
        x_t, c_t = torch.from_numpy(x), torch.from_numpy(c)
        methods["torch.mm"] = lambda: torch.mm(x_t, c_t.T)
    return methods


def _peer_factory(c: Any) -> Callable:
    """Builds the peers' per-K state once; returns (x, k) -> {peer name: call}."""
    import faiss
    import torch

    from oltr.memory.bench import numpy_search, torch_search

    c_t = torch.from_numpy(c)
    c_norm_t = (c_t * c_t).sum(dim=1)
    c_norm = c_norm_t.numpy()
    flat = faiss.IndexFlatL2(c.shape[1])
    flat.add(c)

    def peers(x: Any, k: int) -> dict:
        x_t = torch.from_numpy(x)
        return {"numpy": lambda: numpy_search(x, c, c_norm, k),
                "torch": lambda: torch_search(x_t, c_t, c_norm_t, k),
                "faiss": lambda: flat.search(x, k)}
    return peers


def _run_classes(spec: dict, cases: list, out: dict, timer: Callable, log: Callable[[str], None]) -> None:
    """All cases of one K: data, peers and engine indexes built once, outside the timings."""
    import numpy as np

    from oltr.memory.bench import core_index, format_case, format_time, make_data

    num_classes = cases[0].num_classes
    c, queries = make_data(spec["seed"], max(case.batch for case in cases), num_classes)
    peers = _peer_factory(c)
    indexes = {}
    for name in spec["engines"]:
        index = core_index(c, name)
        out["kernels"][name] = index.kernel
        if name != "auto" and index.kernel != name:
            out["notes"].append(f"forced engine {name} reported kernel {index.kernel}")
        indexes[name] = index
    measured = set()  # the floors are measured once per (B, K), at its first (smallest) k
    for case in sorted(cases, key=lambda case: (case.batch, case.k)):
        x = np.ascontiguousarray(queries[: case.batch])
        first = bool(spec.get("floors")) and case.batch not in measured
        measured.add(case.batch)
        methods = _methods(spec, case, c, x, indexes, peers, yardstick=first)
        reference = methods["numpy"]()[1][:, 0]
        for name, index in indexes.items():
            wrong = int(np.sum(index.search(x, case.k)[1][:, 0] != reference))
            if wrong:
                out["notes"].append(f"{name} at {format_case(case)}: nearest index differs from "
                                    f"numpy's GEMM form for {wrong} of {case.batch} queries")
        for name, fn in methods.items():
            seconds = timer(fn)
            row = {"case": [case.batch, num_classes, case.k], "method": name, "seconds": seconds}
            if name in indexes and hasattr(indexes[name], "kernel_for"):  # the engine this call ran
                row["engine"] = indexes[name].kernel_for(case.k, case.batch)
            out["times"].append(row)
            log(f"[{spec['group']}] {format_case(case)} {name:14s} {format_time(seconds)}")
        if first and case.batch == 1 and "auto" in indexes:
            nbytes, source = stored_bytes(indexes["auto"], indexes["auto"].kernel, num_classes, c.shape[1])
            seconds = read_floor(nbytes, spec["threads"], timer)
            out["times"].append({"case": [case.batch, num_classes, case.k], "method": "read",
                                 "seconds": seconds, "bytes": nbytes, "bytes_source": source})
            log(f"[{spec['group']}] {format_case(case)} read floor of {nbytes / 1e6:.1f} MB "
                f"{format_time(seconds)}")


def under_load(spec: dict, log: Callable[[str], None]) -> dict:
    """torch.mm (512 × 512 × 512) throughput for ``load_seconds``: alone, beside a thread that
    calls ``auto``'s ``search`` (1 × 1e3, k = 1) every 1 ms, and beside the same thread calling
    a no-op instead (the control: what any Python thread waking every 1 ms costs, GIL hand-offs
    and context switches, without the core); alternated in four slices each."""
    import torch

    from oltr.memory.bench import core_index, make_data

    a, b = torch.randn(512, 512), torch.randn(512, 512)
    c, x = make_data(spec["seed"], 1, 1000)
    index = core_index(c)
    conditions = ("alone", "no-op", "search")
    totals = {name: [0, 0.0] for name in conditions}  # -> [mm calls, seconds]
    searches = [0, 0.0]  # calls, seconds spent in search
    slice_s = spec["load_seconds"] / (4 * len(conditions))

    def caller(stop: threading.Event, search: bool) -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            if search:
                index.search(x, 1)
                searches[0] += 1
                searches[1] += time.perf_counter() - t0
            time.sleep(0.001)

    for _ in range(5):
        torch.mm(a, b)
    for name in conditions * 4:
        stop = threading.Event()
        thread = (threading.Thread(target=caller, args=(stop, name == "search"))
                  if name != "alone" else None)
        if thread:
            thread.start()
        t0, calls = time.perf_counter(), 0
        while time.perf_counter() - t0 < slice_s:
            torch.mm(a, b)
            calls += 1
        totals[name][0] += calls
        totals[name][1] += time.perf_counter() - t0
        stop.set()
        if thread:
            thread.join()
    rate = {name: n / s for name, (n, s) in totals.items()}
    result = {"mm_per_s_without": rate["alone"], "mm_per_s_with": rate["search"],
              "mm_per_s_noop_thread": rate["no-op"],
              "ratio": rate["search"] / rate["alone"],
              "ratio_noop_thread": rate["no-op"] / rate["alone"],
              "searches": searches[0], "search_seconds": searches[1],
              "seconds_with": totals["search"][1], "kernel": index.kernel}
    log(f"[under load] torch.mm {rate['alone']:.0f}/s alone, {rate['no-op']:.0f}/s beside a no-op "
        f"thread, {rate['search']:.0f}/s beside {searches[0]} searches ({result['ratio']:.3f}×)")
    return result


def with_hog(spec: dict, timer: Callable, log: Callable[[str], None]) -> dict:
    """``auto`` and the peers at ``spec["hog_cases"]`` while one busy-looping process runs."""
    from oltr.memory.bench import Case, core_index, format_case, format_time, make_data

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    rows = []
    try:
        time.sleep(0.2)
        for case in (Case(*c) for c in spec["hog_cases"]):
            c, x = make_data(spec["seed"], case.batch, case.num_classes)
            index = core_index(c)
            methods = {"auto": functools.partial(index.search, x, case.k), **_peer_factory(c)(x, case.k)}
            for name, fn in methods.items():
                rows.append({"case": [case.batch, case.num_classes, case.k], "method": name,
                             "seconds": timer(fn)})
                log(f"[hog] {format_case(case)} {name:6s} {format_time(rows[-1]['seconds'])}")
    finally:
        hog.kill()
        hog.wait()
    return {"times": rows}
