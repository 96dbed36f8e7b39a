"""The reporting half of ``bench_memory.py``: targets, the Markdown section of one CPU model, and
the replacement of that section (only) in BENCHMARKS.md.

``results`` (what ``bench_memory.run`` returns): {"meta": {...}, "groups": [one worker output per
instruction-set group, each with "group", "engines", "env_note", "times", ...]}; the first group
is the unrestricted one, which also holds the floors and the load checks.
"""
from __future__ import annotations

import re
from typing import Optional

from oltr.memory.bench import Case, format_case, format_count, format_time

TOP_HEADING = "# Benchmarks: nearest-centroid search (memory core)"
TOP_TEXT = ("One section per CPU model, each written by `python3 benches/bench_memory.py --write "
            "BENCHMARKS.md` on that CPU (a run replaces only its own CPU's section).")
_LEGACY_HEADING = "# Benchmarks: nearest centroid"
PEERS = ("numpy", "torch", "faiss")

# targets of the memory core (ratios are speed-ups: other time ÷ engine time)
AUTO_VS_PEER, AUTO_FLOOR_VS_PEER = 1.2, 1.0
AUTO_VS_MM, AUTO_VS_MM_DOT = 0.9, 1.5  # at B = 1024; the second on CPUs with VNNI or BF16
READ_FLOOR_FACTOR = 1.3  # B = 1: engine time ≤ this × the streaming read of its bytes
FORCED_VS_PEER = 1.0  # every SIMD engine vs the fastest peer of its instruction set
PORTABLE_VS_PEER = 0.8  # the portable engine vs the fastest unrestricted peer
UNDER_LOAD_RATIO = 0.95  # torch.mm throughput beside a 1 ms search loop ÷ alone
HOG_VS_PEER = 1.0  # auto vs the fastest peer with one CPU hog beside it


def begin_marker(label: str) -> str:
    return f"<!-- bench_memory: BEGIN {label} -->"


def end_marker(label: str) -> str:
    return f"<!-- bench_memory: END {label} -->"


def _times(group: dict) -> dict[tuple[Case, str], float]:
    return {(Case(*row["case"]), row["method"]): row["seconds"] for row in group["times"]}


def _per_shape(times: dict, case: Case, method: str) -> Optional[float]:
    """A floor measured once per (B, K) shape, whatever k it was recorded with."""
    return next((s for (c, m), s in times.items()
                 if m == method and (c.batch, c.num_classes) == (case.batch, case.num_classes)), None)


def _fastest(times: dict, case: Case) -> tuple[Optional[float], str]:
    found = [(times[(case, p)], p) for p in PEERS if (case, p) in times]
    return min(found) if found else (None, "")


def _ratio(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.2f}×"


def case_misses(results: dict) -> dict[Case, list[str]]:
    """Every target missed, by case (targets in this module's constants)."""
    misses: dict[Case, list[str]] = {}
    flags = set(results["meta"]["cpu_flags"])
    dot = bool(flags & {"avx512_vnni", "avx_vnni", "avx512_bf16"})
    native = results["groups"][0]
    native_times = _times(native)
    for group in results["groups"]:
        times = _times(group)
        for case in sorted({case for case, _ in times}, key=lambda c: (c.k, c.num_classes, c.batch)):
            peer, peer_name = _fastest(times, case)
            miss = misses.setdefault(case, [])
            for engine in group["engines"]:
                seconds = times.get((case, engine))
                if seconds is None or peer is None:
                    continue
                speedup = peer / seconds
                if engine == "auto":
                    if speedup < AUTO_VS_PEER:
                        below = " — below 1.0×" if speedup < AUTO_FLOOR_VS_PEER else ""
                        miss.append(f"auto {speedup:.2f}× {peer_name} (target {AUTO_VS_PEER}×){below}")
                    _auto_floors(case, seconds, native_times, dot, miss)
                elif engine.startswith("portable"):
                    if speedup < PORTABLE_VS_PEER:
                        miss.append(f"{engine} {speedup:.2f}× {peer_name} (target {PORTABLE_VS_PEER}×)")
                elif speedup < FORCED_VS_PEER:
                    where = "" if group is native else f" ({group['group']} peers)"
                    miss.append(f"{engine} {speedup:.2f}× {peer_name}{where} (target {FORCED_VS_PEER}×)")
    return {case: m for case, m in misses.items() if m}


def _auto_floors(case: Case, seconds: float, native: dict, dot: bool, miss: list[str]) -> None:
    if case.batch >= 1024:
        mm = _per_shape(native, case, "torch.mm")
        target = AUTO_VS_MM_DOT if dot else AUTO_VS_MM
        if mm is not None and mm / seconds < target:
            miss.append(f"auto {mm / seconds:.2f}× torch.mm throughput (target {target}×)")
    if case.batch == 1:
        read = _per_shape(native, case, "read")
        if read is not None and seconds > READ_FLOOR_FACTOR * read:
            miss.append(f"auto {seconds / read:.2f}× the read floor (target ≤ {READ_FLOOR_FACTOR}×)")


def _control(load: dict) -> str:
    """"; the same thread calling a no-op instead: ...×" where the run measured that control."""
    if "ratio_noop_thread" not in load:
        return ""
    return (f"; the same thread calling a no-op instead of `search` (the cost of any Python thread "
            f"waking every 1 ms): {load['mm_per_s_noop_thread']:.0f} calls/s = "
            f"{load['ratio_noop_thread']:.3f}×")


def load_misses(results: dict) -> list[str]:
    """Misses of the under-load and CPU-hog checks."""
    out = []
    native = results["groups"][0]
    load = native.get("under_load")
    if load and load["ratio"] < UNDER_LOAD_RATIO:
        out.append(f"torch.mm beside the 1 ms search loop ran {load['ratio']:.3f}× its throughput "
                   f"alone (target ≥ {UNDER_LOAD_RATIO}×)" + _control(load))
    hog = native.get("hog")
    if hog:
        times = {(Case(*r["case"]), r["method"]): r["seconds"] for r in hog["times"]}
        for case in sorted({case for case, _ in times}, key=lambda c: (c.k, c.num_classes, c.batch)):
            peer, name = _fastest(times, case)
            if peer and (case, "auto") in times and peer / times[(case, "auto")] < HOG_VS_PEER:
                out.append(f"with a CPU hog, auto at {format_case(case)} ran "
                           f"{peer / times[(case, 'auto')]:.2f}× {name} (target ≥ {HOG_VS_PEER}×)")
    return out


def _engine_cell(times: dict, case: Case, engine: str, peer: Optional[float], ran: Optional[str] = None) -> str:
    seconds = times.get((case, engine))
    if seconds is None:
        return "–"
    return (format_time(seconds) + (f" ({peer / seconds:.2f}×)" if peer else "")
            + (f" [{ran}]" if ran else ""))


def _engines_ran(group: dict) -> dict[tuple[Case, str], str]:
    """The engine each timed call ran (``index.kernel_for``; ``auto`` switches by k and B)."""
    return {(Case(*row["case"]), row["method"]): row["engine"] for row in group["times"] if "engine" in row}


def _group_table(results: dict, group: dict, misses: dict[Case, list[str]], first: bool) -> list[str]:
    times = _times(group)
    native = _times(results["groups"][0])
    engines = group["engines"]
    cases = sorted({case for case, _ in times}, key=lambda c: (c.k, c.num_classes, c.batch))
    head = ["B × K, k", *PEERS]
    if first:
        head += ["torch.mm", "read floor"]
    ran = _engines_ran(group)
    head += [("auto [engine it ran]" if ran else f"auto → {group['kernels'].get(e, '?')}") if e == "auto" else e
             for e in engines]
    if first:
        head += ["auto throughput ÷ torch.mm", "auto time ÷ read floor"]
    head += ["target misses"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        peer, peer_name = _fastest(times, case)
        cells = [format_case(case)]
        cells += [format_time(times.get((case, p))) + (" ★" if p == peer_name else "") for p in PEERS]
        auto = times.get((case, "auto"))
        if first:
            mm, read = _per_shape(native, case, "torch.mm"), _per_shape(native, case, "read")
            cells += [format_time(mm), format_time(read)]
        cells += [_engine_cell(times, case, e, peer, ran.get((case, e)) if e == "auto" else None) for e in engines]
        if first:
            cells += [_ratio(mm / auto if mm and auto else None),
                      _ratio(auto / read if read and auto else None)]
        own = [m for m in misses.get(case, []) if any(m.startswith(e + " ") for e in engines)]
        cells.append("; ".join(own) if own else "none")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _library_lines(group: dict) -> list[str]:
    libs = group.get("libraries", {})
    blas = libs.get("blas")
    if isinstance(blas, list):
        blas_text = "; ".join(f"{b['library']} ({b['api']} {b['version']}, kernel "
                              f"{b['architecture'] or 'n/a'}, {b['threads']} thr)" for b in blas)
    else:
        blas_text = str(blas)
    torch_info = libs.get("torch", {})
    env = ", ".join(f"{k}={v}" for k, v in libs.get("env", {}).items() if v is not None) or "none set"
    lines = [f"- group `{group['group']}`, environment: {env}",
             f"  - BLAS kernels loaded (threadpoolctl): {blas_text}",
             f"  - torch {torch_info.get('version')}: ATen CPU capability "
             f"{torch_info.get('cpu_capability')}, MKL {'present' if torch_info.get('mkl') else 'absent'}; "
             f"faiss {libs.get('faiss', {}).get('version')} module "
             f"{', '.join(libs.get('faiss', {}).get('module', [])) or '?'}; numpy {libs.get('numpy')}",
             f"  - load average (1 min) at group start / end: {group['load_start']:.2f} / "
             f"{group['load_end']:.2f}"]
    lines += [f"  - warning: {w}" for w in group.get("warnings", [])]
    lines += [f"  - note: {n}" for n in group.get("notes", [])]
    return lines


def _load_lines(results: dict) -> list[str]:
    native = results["groups"][0]
    load, hog = native.get("under_load"), native.get("hog")
    lines = []
    if load:
        share = load["search_seconds"] / (load["seconds_with"] * results["meta"]["threads"])
        lines += [f"- torch.mm (512 × 512 × 512) alone: {load['mm_per_s_without']:.0f} calls/s; beside a "
                  f"thread calling `search` (engine {load['kernel']}, 1 × 1e3, k = 1) every 1 ms "
                  f"({load['searches']} searches, {share:.1%} of the threads' time inside them): "
                  f"{load['mm_per_s_with']:.0f} calls/s = **{load['ratio']:.3f}×** (target ≥ "
                  f"{UNDER_LOAD_RATIO}×)" + _control(load)]
    if hog:
        times = {(Case(*r["case"]), r["method"]): r["seconds"] for r in hog["times"]}
        for case in sorted({case for case, _ in times}, key=lambda c: (c.k, c.num_classes, c.batch)):
            peer, name = _fastest(times, case)
            auto = times.get((case, "auto"))
            cells = ", ".join(f"{m} {format_time(times[(case, m)])}" for m in ("auto", *PEERS)
                              if (case, m) in times)
            lines.append(f"- one CPU hog beside it, {format_case(case)}: {cells} → auto "
                         f"**{_ratio(peer / auto if peer and auto else None)}** {name} "
                         f"(target ≥ {HOG_VS_PEER}×)")
    return lines


def _read_bytes(results: dict) -> str:
    """" Bytes read: K = 1e3 1.0 MB, ... (how they were known)." for the read floors measured."""
    rows = [r for r in results["groups"][0]["times"] if r["method"] == "read" and "bytes" in r]
    if not rows:
        return ""
    sizes = ", ".join(f"K = {format_count(r['case'][1])} {r['bytes'] / 1e6:.3g} MB" for r in rows)
    sources = "; ".join(sorted({r["bytes_source"] for r in rows}))
    return f" Bytes read: {sizes} ({sources})."


def format_section(results: dict) -> str:
    """The Markdown section of this CPU model, between its BEGIN/END markers."""
    meta = results["meta"]
    label = meta["label"]
    misses = case_misses(results)
    extra = load_misses(results)
    lines = [begin_marker(label), f"## {label}", "",
             f"Command: `{meta['command']}` ({meta['date']}, {meta['wall_s']:.0f} s; load average "
             f"(1 min) {meta['load_start']:.2f} at start, {meta['load_end']:.2f} at end).", "",
             f"- CPU: {meta['cpu_model']}; flags that matter: "
             + ", ".join(f"{f} {'yes' if f in meta['cpu_flags'] else 'no'}" for f in meta["flags_checked"])
             + f"; {meta['logical_cores']} logical cores",
             f"- engines this CPU runs: {', '.join(meta['engines'])}; `auto` chose "
             f"{results['groups'][0]['kernels'].get('auto', '?')}; engine calls: `{meta['engine_call']}`",
             f"- threads: {meta['threads']} for torch (set_num_threads), faiss (omp_set_num_threads), "
             f"the Rust core (oltr.set_num_threads) and BLAS (threadpoolctl); OMP_WAIT_POLICY="
             f"{meta['omp_wait_policy']}",
             f"- timing: warm-up ≥ {meta['warmup_s']} s, then up to {meta['repeats']} calls (at least 3) "
             f"within {meta['budget_s']} s per method; medians; D = 512; queries = a random centroid "
             f"+ N(0, 1) noise", ""]
    for group in results["groups"]:
        lines += _library_lines(group)
    lines += ["", "Median time per call; engine cells give time (fastest peer of the same table ÷ "
              "engine: > 1 = engine faster); ★ marks the fastest peer. `torch.mm` = the FLOP "
              "yardstick (same (B, D) × (D, K) product), `read floor` = the fastest streaming read "
              "of the bytes the `auto` engine stores, both measured in this run." + _read_bytes(results), ""]
    for i, group in enumerate(results["groups"]):
        lines += [f"### Peers: {group['env_note']}", ""]
        lines += _group_table(results, group, misses, first=(i == 0))
        lines.append("")
    load_lines = _load_lines(results)
    if load_lines:
        lines += ["### Under load", ""] + load_lines + [""]
    total = sum(len(m) for m in misses.values()) + len(extra)
    lines += ["### Target misses in this run", ""]
    if not total:
        lines.append("None: every target met at every case measured.")
    for case, items in misses.items():
        lines += [f"- {format_case(case)}: {item}" for item in items]
    lines += [f"- {item}" for item in extra]
    lines += ["", end_marker(label)]
    return "\n".join(lines) + "\n"


def replace_section(document: str, label: str, section: str, cpu_model: str = "") -> str:
    """``document`` with the section of ``label`` replaced by ``section`` (which carries its
    markers); other CPUs' sections and everything else are kept. A new label goes after the last
    section; a document without sections gets the heading and the section at its top, in place
    of an unmarked older table of the same CPU (one whose "- cpu: " line names ``cpu_model``)."""
    begin, end = begin_marker(label), end_marker(label)
    start = document.find(begin)
    if start >= 0:
        stop = document.find(end, start)
        if stop < 0:
            raise ValueError(f"BENCHMARKS file: {begin!r} has no matching {end!r}")
        return document[:start] + section.rstrip("\n") + document[stop + len(end):]
    last_end = [m.end() for m in re.finditer(r"<!-- bench_memory: END .*? -->", document)]
    if last_end:
        at = last_end[-1]
        return document[:at] + "\n\n" + section.rstrip("\n") + document[at:]
    head = f"{TOP_HEADING}\n\n{TOP_TEXT}\n\n{section}"
    legacy = re.search(rf"^{re.escape(_LEGACY_HEADING)}.*$", document, flags=re.M)
    if legacy:
        nxt = re.search(r"^# ", document[legacy.end():], flags=re.M)
        stop = legacy.end() + nxt.start() if nxt else len(document)
        block = document[legacy.start():stop]
        if cpu_model and re.search(rf"^- cpu: {re.escape(cpu_model)}\s*$", block, flags=re.M):
            return document[:legacy.start()] + head + ("\n" if nxt else "") + document[stop:]
        return document[:legacy.start()] + head + "\n" + document[legacy.start():]
    return head + ("\n" + document if document.strip() else "")
