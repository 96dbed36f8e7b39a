"""benches/bench_head.py: its BENCHMARKS.md section is replaced in place, other sections kept;
target misses are reported."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parents[1] / "benches"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHES))
    saved = os.environ.get("OMP_WAIT_POLICY")  # the script sets it for itself at import
    try:
        spec = importlib.util.spec_from_file_location("bench_head", BENCHES / "bench_head.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHES))
        if saved is None:
            os.environ.pop("OMP_WAIT_POLICY", None)
        else:
            os.environ["OMP_WAIT_POLICY"] = saved


TITLE = "# Benchmark: meta-embedding head at inference (CPU X)"
OTHER_TOP = "# Benchmarks: nearest centroid\n\ntable A\n\n## Approximate search\n\ntable B\n"
OTHER_END = "# Benchmark: stage-2 training step\n\ntable C\n"


def test_replace_section_keeps_every_other_section(bench):
    document = f"{OTHER_TOP}\n{TITLE}\n\nold figures\n\n{OTHER_END}"
    new = f"{TITLE}\n\nnew figures\n"
    out = bench.replace_section(document, TITLE, new)
    assert "new figures" in out and "old figures" not in out
    assert out.index("table B") < out.index("new figures") < out.index("table C")
    assert out.count(TITLE) == 1 and "## Approximate search" in out


def test_replace_section_appends_when_absent_and_keeps_other_cpus(bench):
    other_cpu = "# Benchmark: meta-embedding head at inference (CPU Y)\n\nY figures\n"
    out = bench.replace_section(OTHER_TOP + "\n" + other_cpu, TITLE, f"{TITLE}\n\nX figures\n")
    assert out.startswith(OTHER_TOP.rstrip("\n")) and "Y figures" in out and out.rstrip().endswith("X figures")
    assert bench.replace_section("", TITLE, f"{TITLE}\n\nfirst\n") == f"{TITLE}\n\nfirst\n"


def test_write_section_creates_and_updates_the_file(bench, tmp_path):
    target = tmp_path / "BENCHMARKS.md"
    bench.write_section(str(target), f"{TITLE}\n\none\n", TITLE)
    target.write_text(target.read_text() + "\n" + OTHER_END)
    bench.write_section(str(target), f"{TITLE}\n\ntwo\n", TITLE)
    text = target.read_text()
    assert "two" in text and "one" not in text and "table C" in text and not list(tmp_path.glob(".*.tmp"))


def _row(batch, classes, oltr, official, floor, products):
    return {"batch": batch, "classes": classes,
            "times": {"oltr": oltr, "official": official, "floor": floor, "products": products}}


def test_target_misses(bench):
    ok = [_row(1, 10_000, 1.0, 3.5, 0.9, 1.0), _row(1, 1000, 1.0, 2.0, 0.7, 0.9),
          _row(64, 100_000, 1.4, None, 1.0, 1.3)]
    assert bench.target_misses(ok) == []  # K = 1e3 at B = 1 has no official-speed target
    missed = bench.target_misses([_row(1, 100_000, 1.0, 2.5, 0.5, 0.9)])
    assert len(missed) == 2 and "2.50× the official head" in missed[0] and "2.00× the floor" in missed[1]
    assert "| 1 × 1e5 | 1.00 s | 2.50 s | 500.00 ms | 900.00 ms | 2.50× | 2.00× | 1.11× |" in bench.table(
        [_row(1, 100_000, 1.0, 2.5, 0.5, 0.9)])
