"""The memory-core benchmarks on tiny shapes: `oltr bench`'s quick runner, the harness in
benches/ (worker, targets, Markdown, the per-CPU section of BENCHMARKS.md) and its --quick run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from oltr.memory import bench
from oltr.memory.bench import Case
from test_memory_support import require_backend

BENCHES = Path(__file__).resolve().parents[1] / "benches"
sys.path.insert(0, str(BENCHES))

import bench_memory  # noqa: E402
import memory_report  # noqa: E402
import memory_worker  # noqa: E402


def test_parse_cases():
    assert bench.parse_cases("1x1e3, 64x100:10") == [Case(1, 1000, 1), Case(64, 100, 10)]
    for bad in ("64by100", "64x100:0", "3x5:6", "0x10"):
        with pytest.raises(ValueError, match="--shapes"):
            bench.parse_cases(bad)


def test_numpy_and_torch_peers_agree_with_exact_search():
    import numpy as np
    import torch

    c, x = bench.make_data(1, 5, 300)
    exact = ((x[:, None, :].astype(np.float64) - c[None]) ** 2).sum(-1).argsort(axis=1)[:, :4]
    c_norm = (c * c).sum(axis=1)
    assert (bench.numpy_search(x, c, c_norm, 4)[1] == exact).all()
    assert (bench.numpy_search(x, c, c_norm, 1)[1][:, 0] == exact[:, 0]).all()
    c_t = torch.from_numpy(c)
    assert (bench.torch_search(torch.from_numpy(x), c_t, torch.from_numpy(c_norm), 4)[1].numpy() == exact).all()
    bench._TORCH_BLOCK_BYTES, saved = 4 * 5 * 7, bench._TORCH_BLOCK_BYTES  # blocks of 7 centroids
    try:
        assert (bench.torch_search(torch.from_numpy(x), c_t, torch.from_numpy(c_norm), 1)[1].numpy()
                == exact[:, 0]).all()
    finally:
        bench._TORCH_BLOCK_BYTES = saved


def test_quick_runner_and_its_help(capsys):
    require_backend("rust")
    import torch

    import oltr
    from oltr.cli import main

    before = (torch.get_num_threads(), oltr.get_num_threads())
    results = bench.run_quick([Case(3, 80), Case(2, 80, 5)], threads=1, repeats=3, budget_s=0.001, warmup_s=0.0)
    assert (torch.get_num_threads(), oltr.get_num_threads()) == before  # settings restored
    assert [r["case"] for r in results] == [Case(3, 80), Case(2, 80, 5)]
    assert all(set(r["times"]) == {"rust", "numpy", "torch", "faiss"} and min(r["times"].values()) > 0
               for r in results)
    text = bench.format_quick(results, threads=1)
    assert "| 2 × 80, k = 5 |" in text and "benches/bench_memory.py" in text
    assert main(["bench", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: oltr bench")
    assert main(["bench", "--shapes", "64by100"]) == 2
    assert "argument --shapes: expects BxK" in capsys.readouterr().err


def test_engine_groups_and_environments(monkeypatch):
    avx512 = ["avx2", "avx512f"]
    assert bench_memory.group_of("avx2-f32", avx512) == "avx2"
    # The 256-bit int8 engine is what an AVX2 + AVX-VNNI CPU runs: it races AVX2 peers.
    assert bench_memory.group_of("avx-vnni-i8", avx512) == "avx2"
    assert bench_memory.group_of("avx-vnni-i8", ["avx2", "avx_vnni"]) == bench_memory.NATIVE
    assert bench_memory.group_of("avx2-f32", ["avx2"]) == bench_memory.NATIVE  # peers are AVX2 already
    assert bench_memory.group_of("avx512-bf16", avx512) == bench_memory.NATIVE
    assert bench_memory.group_of("portable-f32", avx512) == bench_memory.NATIVE
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Zen")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "123")
    native, avx2 = bench_memory.group_env(bench_memory.NATIVE), bench_memory.group_env("avx2")
    assert "OPENBLAS_CORETYPE" not in native and "OPENBLAS_L2_SIZE" not in native
    assert avx2["OPENBLAS_CORETYPE"] == "Haswell" and "OPENBLAS_L2_SIZE" not in avx2
    assert avx2["ATEN_CPU_CAPABILITY"] == "avx2" and avx2["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    specs = bench_memory.plan(["auto", "avx512-bf16", "avx2-f32"], avx512, [Case(1, 10)], 2, quick=True)
    assert [(s["group"], s["engines"], s["floors"], s["load_checks"]) for s in specs] == [
        (bench_memory.NATIVE, ["auto", "avx512-bf16"], True, True), ("avx2", ["avx2-f32"], False, False)]
    only_avx2 = bench_memory.plan(["avx2-f32"], avx512, [Case(1, 10)], 2, quick=True)
    assert [(s["group"], s["engines"], s["load_checks"]) for s in only_avx2] == [
        (bench_memory.NATIVE, [], False), ("avx2", ["avx2-f32"], False)]  # unrestricted peers still shown


def test_available_engines_listing_and_probe(monkeypatch):
    require_backend("rust")
    import oltr._core as core
    import oltr.memory as memory

    monkeypatch.setattr(memory, "available_kernels", lambda: ["auto", "x-f32"], raising=False)
    assert memory_worker.available_engines() == ["x-f32"]
    monkeypatch.delattr(memory, "available_kernels")
    monkeypatch.delattr(core, "available_kernels", raising=False)
    probed = memory_worker.available_engines()  # the fallback: each known name that builds itself
    assert "portable-f32" in probed and set(probed) <= set(memory_worker.KNOWN_ENGINES)


def _results(times: dict, engines=("auto",), flags=("avx512f",), restricted=None) -> dict:
    """Results as bench_memory.run returns them, from {(B, K, k, method): seconds}."""
    def group(name, table, names):
        return {"group": name, "engines": list(names), "env_note": name, "kernels": {"auto": "e"},
                "times": [{"case": [b, n, k], "method": m, "seconds": s} for (b, n, k, m), s in table.items()],
                "load_start": 0.5, "load_end": 0.6, "libraries": {}, "notes": [], "warnings": []}
    groups = [group(bench_memory.NATIVE, times, engines)]
    if restricted:
        groups.append(group("avx2", restricted, ["avx2-f32"]))
    meta = {"label": "Test CPU (family 1, model 2)", "cpu_model": "Test CPU", "cpu_flags": list(flags),
            "command": "python3 benches/bench_memory.py", "date": "today", "wall_s": 1.0, "load_start": 0.1,
            "load_end": 0.2, "flags_checked": ("avx512f", "avx512_vnni"), "logical_cores": 2, "threads": 2,
            "engines": ["e"], "engine_call": "call", "omp_wait_policy": "PASSIVE", "warmup_s": 0.1,
            "repeats": 3, "budget_s": 0.1}
    return {"meta": meta, "groups": groups}


def test_targets_each_miss_is_reported():
    peers = {"numpy": 1.0, "torch": 2.0, "faiss": 3.0}
    times = {(64, 1000, 1, p): s for p, s in peers.items()}
    times[(64, 1000, 1, "auto")] = 1.0 / 1.1  # 1.1× the fastest peer: misses 1.2×
    times.update({(64, 1000, 10, p): s for p, s in peers.items()})
    times[(64, 1000, 10, "auto")] = 1.0 / 0.9  # below 1.0×
    times.update({(1024, 1000, 1, p): 10.0 for p in peers})
    times[(1024, 1000, 1, "auto")] = 5.0  # 2× the peers but 0.8× torch.mm
    times[(1024, 1000, 1, "torch.mm")] = 4.0
    times.update({(1, 1000, 1, p): s for p, s in peers.items()})
    times[(1, 1000, 1, "auto")] = 0.5
    times[(1, 1000, 1, "read")] = 0.3  # 1.67× the read floor
    times[(1, 1000, 1, "portable-f32")] = 1.0 / 0.7
    restricted = {(64, 1000, 1, p): s for p, s in peers.items()}
    restricted[(64, 1000, 1, "avx2-f32")] = 1.0 / 0.95
    results = _results(times, engines=("auto", "portable-f32"), restricted=restricted)
    misses = {case: " | ".join(m) for case, m in memory_report.case_misses(results).items()}
    assert "auto 1.10× numpy (target 1.2×)" in misses[Case(64, 1000, 1)]
    assert "below 1.0×" not in misses[Case(64, 1000, 1)] and "below 1.0×" in misses[Case(64, 1000, 10)]
    assert "auto 0.80× torch.mm throughput (target 0.9×)" == misses[Case(1024, 1000, 1)]
    assert "auto 1.67× the read floor" in misses[Case(1, 1000, 1)]
    assert "portable-f32 0.70× numpy (target 0.8×)" in misses[Case(1, 1000, 1)]
    assert "avx2-f32 0.95× numpy (avx2 peers) (target 1.0×)" in misses[Case(64, 1000, 1)]
    flags_dot = _results(times, flags=("avx512f", "avx512_vnni"))  # VNNI: 1.5× torch.mm expected
    assert "(target 1.5×)" in " ".join(memory_report.case_misses(flags_dot)[Case(1024, 1000, 1)])
    times[(1024, 1000, 1, "auto")] = 2.0  # 2× torch.mm, 5× the peers: met
    assert Case(1024, 1000, 1) not in memory_report.case_misses(_results(times))
    results["groups"][0]["under_load"] = {"ratio": 0.9, "mm_per_s_without": 100.0, "mm_per_s_with": 90.0,
                                          "searches": 10, "search_seconds": 0.001, "seconds_with": 1.0,
                                          "kernel": "e"}
    results["groups"][0]["hog"] = {"times": [{"case": [1, 10, 1], "method": m, "seconds": s}
                                             for m, s in (("auto", 2.0), ("numpy", 1.0))]}
    extra = memory_report.load_misses(results)
    assert len(extra) == 2 and "0.900×" in extra[0] and "auto at 1 × 10, k = 1 ran 0.50× numpy" in extra[1]
    assert "no-op" not in extra[0]  # an older run without the control: no control quoted
    results["groups"][0]["under_load"].update(mm_per_s_noop_thread=97.0, ratio_noop_thread=0.97)
    extra = memory_report.load_misses(results)
    assert "calling a no-op instead of `search`" in extra[0] and "97 calls/s = 0.970×" in extra[0]
    text = memory_report.format_section(results)
    assert text.startswith(memory_report.begin_marker("Test CPU (family 1, model 2)"))
    assert "| 64 × 1e3, k = 10 |" in text and "auto 1.10× numpy" in text and "0.50× numpy" in text


def _section(label: str, body: str) -> str:
    return f"{memory_report.begin_marker(label)}\n## {label}\n{body}\n{memory_report.end_marker(label)}\n"


def test_write_replaces_only_this_cpus_section():
    a1, b1, b2, c1 = _section("A", "a1"), _section("B", "b1"), _section("B", "b2"), _section("C", "c1")
    doc = memory_report.replace_section("", "A", a1)
    assert doc.startswith(memory_report.TOP_HEADING) and doc.count("a1") == 1
    doc += "\n# Benchmark: training step\n\nkept\n"
    doc = memory_report.replace_section(doc, "B", b1)
    assert doc.index("a1") < doc.index("b1") < doc.index("# Benchmark: training step")
    doc = memory_report.replace_section(doc, "B", b2)
    assert "b1" not in doc and doc.count("b2") == 1 and doc.count("a1") == 1 and doc.endswith("kept\n")
    doc = memory_report.replace_section(doc, "A", _section("A", "a2"))
    assert "a1" not in doc and doc.index("a2") < doc.index("b2")
    assert memory_report.replace_section(doc, "C", c1).count(memory_report.TOP_HEADING) == 1
    with pytest.raises(ValueError, match="no matching"):
        memory_report.replace_section(memory_report.begin_marker("A") + "\n", "A", a1)


def test_write_over_an_unmarked_older_table():
    legacy = "# Benchmarks: nearest centroid (D = 512, k = 1)\n\n- cpu: Old CPU\n\n| t |\n\n# Other\n\nkept\n"
    same = memory_report.replace_section(legacy, "Old CPU (family 1)", _section("Old CPU (family 1)", "new"),
                                         cpu_model="Old CPU")
    assert "| t |" not in same and "new" in same and same.endswith("# Other\n\nkept\n")
    other = memory_report.replace_section(legacy, "New CPU", _section("New CPU", "new"), cpu_model="New CPU")
    assert "| t |" in other and other.index("new") < other.index("| t |")


def test_worker_group_in_process():
    require_backend("rust")
    spec = {"group": bench_memory.NATIVE, "engines": ["auto", "portable-f32"],
            "cases": [[1, 64, 1], [3, 64, 2], [3, 64, 3]], "threads": 1, "seed": 0, "floors": True,
            "load_checks": True, "hog_cases": [[2, 64, 1]],
            "repeats": 3, "budget_s": 0.001, "warmup_s": 0.0, "load_seconds": 0.16}
    out = memory_worker.run_group(spec, log=lambda _msg: None)
    methods = {(tuple(r["case"]), r["method"]) for r in out["times"]}
    for case in ((1, 64, 1), (3, 64, 2)):
        assert {(case, m) for m in ("numpy", "torch", "faiss", "auto", "portable-f32")} <= methods
    assert ((1, 64, 1), "read") in methods and ((1, 64, 1), "torch.mm") in methods
    assert ((3, 64, 2), "torch.mm") in methods  # the yardstick: once per shape, at its first k
    assert sum(m == "torch.mm" for _, m in methods) == 2 and sum(m == "read" for _, m in methods) == 1
    assert out["kernels"]["portable-f32"] == "portable-f32" and out["notes"] == []
    load = out["under_load"]
    assert load["ratio"] > 0 and load["searches"] > 0 and load["ratio_noop_thread"] > 0
    assert load["ratio"] == load["mm_per_s_with"] / load["mm_per_s_without"]
    assert {r["method"] for r in out["hog"]["times"]} == {"auto", "numpy", "torch", "faiss"}
    assert any(b["api"] == "openblas" for b in out["libraries"]["blas"])
    out.update(engines=spec["engines"], env_note="unrestricted", warnings=[])
    results = _results({})
    results["groups"] = [out]
    text = memory_report.format_section(results)
    read = next(r for r in out["times"] if r["method"] == "read")
    assert read["bytes_source"] == "index.packed_nbytes" or (
        read["bytes"] == memory_worker.stored_bytes(object(), out["kernels"]["auto"], 64, 512)[0])
    assert "| 3 × 64, k = 3 |" in text and f"Bytes read: K = 64 {read['bytes'] / 1e6:.3g} MB" in text


def test_stored_bytes_from_the_index_or_the_engine_name():
    class Packed:
        packed_nbytes = 1234

    assert memory_worker.stored_bytes(Packed(), "avx2-f32", 10, 8) == (1234, "index.packed_nbytes")
    assert memory_worker.stored_bytes(object(), "avx512-bf16", 10, 8)[0] == 160
    assert memory_worker.stored_bytes(object(), "avx512-vnni-i8", 10, 8)[0] == 80
    assert memory_worker.stored_bytes(object(), "portable-f32", 10, 8)[0] == 320


def test_quick_run_writes_its_section_beside_another_cpus(tmp_path):
    require_backend("rust")
    target = tmp_path / "BENCHMARKS.md"
    target.write_text(memory_report.replace_section("", "Other CPU", _section("Other CPU", "theirs")))
    proc = subprocess.run([sys.executable, str(BENCHES / "bench_memory.py"), "--quick", "--shapes", "2x64,2x64:3",
                           "--write", str(target)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = target.read_text()
    label = bench_memory.cpu_info()["label"]
    assert "theirs" in text and text.count(memory_report.begin_marker(label)) == 1
    assert "| 2 × 64, k = 3 |" in text and "### Target misses in this run" in text
    assert proc.stdout.strip() in text  # printed and written alike
