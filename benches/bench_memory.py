"""Benchmark oltr's memory core against torch, numpy, faiss and the official formula.

    python3 benches/bench_memory.py [--quick] [--shapes 1x1e3,64x1e5] [--write BENCHMARKS.md]

The runner lives in ``oltr.memory.bench`` (also used by ``oltr bench``); it sets
OMP_WAIT_POLICY=PASSIVE (unless set) before torch and faiss load, so idle OpenMP pools sleep
instead of spinning against each other on a small machine (PERF_BASELINE.md, threading traps).
"""
from __future__ import annotations

import sys

if __name__ == "__main__":
    from oltr.memory.bench import main

    sys.exit(main())
