"""The benchmark runner on a tiny shape: every method runs and the table is complete."""
from __future__ import annotations

import pytest

from oltr.memory import bench
from test_memory_support import require_backend


def test_parse_shapes():
    assert bench.parse_shapes("1x1e3,64x100") == [(1, 1000), (64, 100)]
    with pytest.raises(ValueError, match="--shapes"):
        bench.parse_shapes("64by100")


def test_run_benchmark_tiny_shape_and_markdown():
    require_backend("rust")
    import torch

    import oltr

    before = (torch.get_num_threads(), oltr.get_num_threads())
    rows = bench.run_benchmark([(3, 80)], repeats=3, budget_s=0.01, warmup_s=0.0, threads=1, approx=("ivf",))
    assert (torch.get_num_threads(), oltr.get_num_threads()) == before  # settings restored
    by_method = {r.method: r for r in rows}
    assert set(by_method) == {"official", "torch", "numpy", "faiss", "rust", "sgemm", "faiss-ivf"}
    assert all(r.seconds and r.seconds > 0 and r.repeats >= 3 for r in rows)
    assert 0.0 <= by_method["faiss-ivf"].recall_at_1 <= 1.0
    text = bench.format_markdown(rows, command="cmd --quick", info={"threads": 1})
    assert "cmd --quick" in text and "| 3 × 80 |" in text
    assert "rust ÷ fastest peer" in text and "faiss-ivf recall@1" in text
