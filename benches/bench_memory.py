"""Benchmark oltr's memory core against torch, numpy, faiss and the official formula.

    python3 benches/bench_memory.py [--quick] [--shapes 1x1e3,64x1e5] [--write BENCHMARKS.md]

The runner lives in ``oltr.memory.bench`` (also used by ``oltr bench``). OpenMP pools are
set to passive waiting before torch and faiss load, so idle pools do not spin against each
other on a small machine (see PERF_BASELINE.md, threading traps).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if __name__ == "__main__":
    from oltr.memory.bench import main

    sys.exit(main())
