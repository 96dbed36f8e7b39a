"""Benchmark of oltr's memory core: every engine this CPU runs against numpy, torch and faiss.

    python3 benches/bench_memory.py [--quick] [--engines auto,avx2-f32] [--shapes 64x1e4:10,...]
                                    [--threads N] [--write BENCHMARKS.md] [--json FILE]

For each engine this CPU runs (forced with ``kernel=NAME``) and ``auto``, at B ∈ {1, 64, 1024} ×
K ∈ {1e3, 1e4, 1e5} (D = 512) with k = 1 and at (64, 1e4), (1024, 1e4), (64, 1e5) with k = 10
and 100, it times the engine beside numpy (``x @ c.T`` + argmin / argpartition), torch (addmm +
min / topk) and faiss (IndexFlatL2) in the same process. Each instruction-set group runs in its
own subprocess, whose environment is set before numpy, torch and faiss load: the unrestricted
group (``auto``, the AVX-512 engines, the portable engine) unsets OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE so the libraries pick their own kernels; on an AVX-512 CPU the AVX2-level
engines (``avx2-f32``, and ``avx-vnni-i8``: what a CPU with AVX2 + AVX-VNNI and no AVX-512 runs)
race peers restricted to AVX2 (OPENBLAS_CORETYPE=Haswell, MKL_ENABLE_INSTRUCTIONS=AVX2,
ATEN_CPU_CAPABILITY=avx2, FAISS_OPT_LEVEL=AVX2), and threadpoolctl records the BLAS kernel
each subprocess really loaded. The unrestricted group also measures this machine's floors (a
streaming read of the bytes ``auto`` stores, at B = 1; ``torch.mm`` of the same shape) and the
load checks (torch.mm throughput beside a 1 ms search loop; ``auto`` vs the peers beside one
CPU hog). The output is one Markdown section for this CPU model, with every target miss;
``--write FILE`` replaces only this CPU model's section in FILE.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

import memory_report
from memory_worker import ISA_VARIABLES, available_engines, run_group
from oltr.memory.bench import Case, cases_argument

K1_SHAPES = [(b, n) for n in (1_000, 10_000, 100_000) for b in (1, 64, 1024)]
TOPK_SHAPES = [(64, 10_000), (1024, 10_000), (64, 100_000)]
DEFAULT_CASES = [Case(b, n, 1) for b, n in K1_SHAPES] + [
    Case(b, n, k) for k in (10, 100) for b, n in TOPK_SHAPES]
QUICK_CASES = [Case(1, 1000, 1), Case(64, 1000, 1), Case(64, 1000, 10)]
HOG_CASES = [Case(1, 10_000, 1), Case(64, 10_000, 1), Case(1024, 10_000, 1)]
FLAGS_CHECKED = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni")
#: environment of each restricted group (set before numpy, torch and faiss load)
RESTRICTED = {"avx2": {"OPENBLAS_CORETYPE": "Haswell", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                       "ATEN_CPU_CAPABILITY": "avx2", "FAISS_OPT_LEVEL": "AVX2"}}
NATIVE = "unrestricted"
TIMING = {"full": {"repeats": 15, "budget_s": 0.6, "warmup_s": 0.3, "load_seconds": 6.0},
          "quick": {"repeats": 3, "budget_s": 0.02, "warmup_s": 0.0, "load_seconds": 0.4}}


def cpu_info() -> dict:
    """Model name, family/model numbers and flags from /proc/cpuinfo; the section label."""
    from oltr._platform import read_cpuinfo

    fields = read_cpuinfo()
    model = fields.get("model name") or platform.processor() or platform.machine()
    ids = ([f"family {fields['cpu family']}, model {fields['model']}"]
           if "cpu family" in fields and "model" in fields else [])
    if "CPU implementer" in fields:  # ARM
        ids.append(f"implementer {fields['CPU implementer']}, part {fields.get('CPU part', '?')}")
    label = f"{model} ({'; '.join(ids)})" if ids else model
    flags = sorted(set((fields.get("flags") or fields.get("Features") or "").split()))
    return {"cpu_model": model, "label": label.replace("--", "-"), "cpu_flags": flags}


def group_of(engine: str, flags: Sequence[str]) -> str:
    """The peers an engine races: "avx2" (restricted) for an AVX2-level engine ("avx2-*", and
    "avx-*" such as the 256-bit int8 engine "avx-vnni-i8") on a CPU with AVX-512 (whose
    unrestricted peers would use AVX-512), else the unrestricted group."""
    avx2_level = engine.startswith("avx2") or engine.startswith("avx-")
    return "avx2" if avx2_level and "avx512f" in flags else NATIVE


def group_env(group: str) -> dict[str, str]:
    """This process's environment with the group's instruction-set variables (the unrestricted
    group: none of them, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset)."""
    env = {k: v for k, v in os.environ.items() if k not in ISA_VARIABLES or k == "OMP_WAIT_POLICY"}
    env.update(RESTRICTED.get(group, {}))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP pools sleep instead of spinning
    return env


def env_note(group: str) -> str:
    if group == NATIVE:
        return "unrestricted, each library picks its own kernels"
    return f"restricted to {group.upper()} (" + ", ".join(f"{k}={v}" for k, v in RESTRICTED[group].items()) + ")"


def check_restriction(group: dict) -> list[str]:
    """Warnings when a restricted group's libraries did not load the kernels asked for."""
    if group["group"] != "avx2":
        return []
    libs, warnings = group.get("libraries", {}), []
    for blas in libs.get("blas", []) if isinstance(libs.get("blas"), list) else []:
        if blas["api"] == "openblas" and blas["architecture"] != "Haswell":
            warnings.append(f"{blas['library']} ran kernel {blas['architecture']}, not Haswell")
    capability = libs.get("torch", {}).get("cpu_capability")
    if capability != "AVX2":
        warnings.append(f"torch's ATen CPU capability is {capability}, not AVX2")
    return warnings


def plan(engines: Sequence[str], flags: Sequence[str], cases: Sequence[Case], threads: int,
         quick: bool, seed: int = 0) -> list[dict]:
    """One worker spec per group; the unrestricted group first (with floors and load checks)."""
    timing = TIMING["quick" if quick else "full"]
    groups: dict[str, list[str]] = {NATIVE: []}
    for name in engines:
        groups.setdefault(group_of(name, flags) if name != "auto" else NATIVE, []).append(name)
    hog = [c for c in cases if c.k == 1][:1] if quick else HOG_CASES
    specs = []
    for group, names in groups.items():
        first = group == NATIVE
        specs.append({"group": group, "engines": names, "env_note": env_note(group),
                      "cases": [[c.batch, c.num_classes, c.k] for c in cases], "threads": threads,
                      "seed": seed, "floors": first, "load_checks": first and bool(hog) and "auto" in names,
                      "hog_cases": [[c.batch, c.num_classes, c.k] for c in hog],
                      "repeats": timing["repeats"], "budget_s": timing["budget_s"],
                      "warmup_s": timing["warmup_s"], "load_seconds": timing["load_seconds"]})
    return specs


def run_worker(spec: dict) -> dict:
    """Run one group in a fresh interpreter with the group's environment; its JSON output."""
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", spec_path,
                               "--worker-out", out_path], env=group_env(spec["group"]))
        if proc.returncode != 0:
            raise RuntimeError(f"the {spec['group']} group's subprocess exited with {proc.returncode}")
        with open(out_path) as f:
            out = json.load(f)
    out.update(engines=spec["engines"], env_note=spec["env_note"])
    out["warnings"] = check_restriction(out)
    blas = out.get("libraries", {}).get("blas")
    if "MKL_ENABLE_INSTRUCTIONS" in RESTRICTED.get(spec["group"], {}) and not (
            isinstance(blas, list) and any(b["api"] == "mkl" for b in blas)):
        out["notes"].append("torch's MKL is not visible to threadpoolctl: MKL_ENABLE_INSTRUCTIONS was set, "
                            "its effect not read back")
    return out


def run(engines: Sequence[str], cases: Sequence[Case], threads: int, quick: bool,
        command: str) -> dict:
    """Every group's worker, then the run's metadata: the ``results`` of memory_report."""
    cpu = cpu_info()
    load_start, start = os.getloadavg()[0], time.time()
    groups = [run_worker(spec) for spec in plan(engines, cpu["cpu_flags"], cases, threads, quick)]
    timing = TIMING["quick" if quick else "full"]
    meta = {**cpu, "command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(start)),
            "wall_s": time.time() - start, "load_start": load_start, "load_end": os.getloadavg()[0],
            "flags_checked": FLAGS_CHECKED, "logical_cores": os.cpu_count(), "threads": threads,
            "engines": [e for e in engines if e != "auto"] or ["(none selected)"],
            "engine_call": "oltr._core.CentroidIndex(c, kernel=NAME).search(x, k), index built once",
            "omp_wait_policy": group_env(NATIVE)["OMP_WAIT_POLICY"], **timing}
    return {"meta": meta, "groups": groups}


def write_section(path: str, results: dict) -> None:
    """Replace this CPU model's section of ``path`` (created if missing), atomically."""
    try:
        with open(path, encoding="utf-8") as f:
            document = f.read()
    except FileNotFoundError:
        document = ""
    meta = results["meta"]
    text = memory_report.replace_section(document, meta["label"], memory_report.format_section(results),
                                         meta["cpu_model"])
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _select_engines(text: Optional[str], available: Sequence[str]) -> list[str]:
    choices = ["auto", *available]
    if text is None:
        return choices
    wanted = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in choices]
    if unknown:
        raise ValueError(f"--engines: {', '.join(unknown)} not run by this CPU; choices: {', '.join(choices)}")
    return wanted


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_memory.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny grid and short timings (smoke test)")
    parser.add_argument("--engines", default=None,
                        help="comma-separated engines to run (default: auto and every engine this CPU runs)")
    parser.add_argument("--shapes", type=cases_argument, default=None,
                        help="comma-separated BxK or BxK:k cases, e.g. 1x1e3,64x1e4:100 (default: the grid)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for torch, faiss, BLAS and the core (default: the logical cores)")
    parser.add_argument("--write", metavar="FILE", help="replace this CPU model's section of FILE")
    parser.add_argument("--json", metavar="FILE", help="also save the raw results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.worker:
        with open(args.worker) as f:
            out = run_group(json.load(f), log)
        with open(args.worker_out, "w") as f:
            json.dump(out, f)
        return 0
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:
        engines = _select_engines(args.engines, available_engines())
    except ValueError as err:
        parser.error(str(err))
    cases = args.shapes or (QUICK_CASES if args.quick else DEFAULT_CASES)
    command = shlex.join(["python3", *(sys.argv if argv is None else ["benches/bench_memory.py", *argv])])
    results = run(engines, cases, args.threads, args.quick, command)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(memory_report.format_section(results), end="")
    if args.write:
        write_section(args.write, results)
        log(f"wrote the section '{results['meta']['label']}' of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
