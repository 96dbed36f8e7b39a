"""Every exact backend against the float64 oracle, on random and adversarial data."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import oltr
from oltr.memory import CentroidIndex, FaissOptions
from test_memory_support import (
    EXACT_BACKENDS,
    adversarial_cases,
    assert_matches_oracle,
    oracle_distances,
    require_backend,
)

CASES = adversarial_cases()


@pytest.fixture(params=EXACT_BACKENDS)
def backend(request) -> str:
    require_backend(request.param)
    return request.param


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_search_matches_oracle(backend, case):
    _, c, x, k = case
    index = CentroidIndex(c, backend=backend)
    assert index.backend == backend
    assert (index.num_classes, index.dim) == c.shape
    dist, idx = index.search(x, k=k)
    assert isinstance(dist, np.ndarray) and isinstance(idx, np.ndarray)
    assert_matches_oracle(dist, idx, x, c, k)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_reachability_matches_oracle(backend, case):
    _, c, x, _ = case
    reach = CentroidIndex(c, backend=backend).reachability(x, scale=10.0)
    d_min = oracle_distances(x, c).min(axis=1)
    expected = 10.0 / np.maximum(d_min, oltr.memory.REACHABILITY_EPS)
    assert reach.dtype == np.float32 and reach.shape == (x.shape[0],)
    assert np.all(np.isfinite(reach))
    np.testing.assert_allclose(reach, expected, rtol=2e-5)


def test_near_centroid_precision(backend):
    """Queries 1e-3 from centroids of norm 25: GEMM-form cancellation must not leak out."""
    rng = np.random.default_rng(3)
    c = rng.standard_normal((500, 512))
    c = (25.0 * c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
    step = rng.standard_normal((64, 512))
    x = (c[:64] + 1e-3 * step / np.linalg.norm(step, axis=1, keepdims=True)).astype(np.float32)
    dist, idx = CentroidIndex(c, backend=backend).search(x, k=1)
    np.testing.assert_array_equal(idx[:, 0], np.arange(64))
    ref = oracle_distances(x, c)[np.arange(64), np.arange(64)]
    assert np.max(np.abs(dist[:, 0] - ref) / ref) <= 1e-5


def test_float64_noncontiguous_and_torch_inputs(backend):
    rng = np.random.default_rng(11)
    c64 = rng.standard_normal((70, 30))
    wide = rng.standard_normal((25, 60))
    x_strided = wide[:, ::2]  # float64, non-contiguous
    assert not x_strided.flags.c_contiguous
    index = CentroidIndex(np.asfortranarray(c64), backend=backend)
    dist, idx = index.search(x_strided, k=3)
    assert_matches_oracle(dist, idx, x_strided, c64, 3)

    xt = torch.from_numpy(np.ascontiguousarray(x_strided.T)).T  # torch, float64, strided
    dist_t, idx_t = index.search(xt, k=3)
    assert isinstance(dist_t, torch.Tensor) and isinstance(idx_t, torch.Tensor)
    assert dist_t.dtype == torch.float32 and idx_t.dtype == torch.int64
    np.testing.assert_array_equal(idx_t.numpy(), idx)
    np.testing.assert_allclose(dist_t.numpy(), dist, rtol=1e-6)
    reach_t = index.reachability(xt)
    assert isinstance(reach_t, torch.Tensor) and reach_t.dtype == torch.float32

    index_t = CentroidIndex(torch.from_numpy(c64), backend=backend)  # torch centroids
    dist2, idx2 = index_t.search(x_strided, k=3)
    np.testing.assert_array_equal(idx2, idx)


def test_backends_agree_on_larger_problem(backend):
    rng = np.random.default_rng(5)
    c = rng.standard_normal((3000, 128)).astype(np.float32)
    x = rng.standard_normal((96, 128)).astype(np.float32)
    dist, idx = CentroidIndex(c, backend=backend).search(x, k=5)
    assert_matches_oracle(dist, idx, x, c, 5)


def test_concurrent_calls_from_threads(backend):
    rng = np.random.default_rng(21)
    c = rng.standard_normal((800, 64)).astype(np.float32)
    batches = [rng.standard_normal((int(rng.integers(1, 40)), 64)).astype(np.float32)
               for _ in range(24)]
    index = CentroidIndex(c, backend=backend)
    expected = [index.search(b, k=3) for b in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda b: index.search(b, k=3), batches))
    for (d, i), (de, ie) in zip(results, expected):
        np.testing.assert_array_equal(i, ie)
        np.testing.assert_array_equal(d, de)


@pytest.mark.parametrize("backend_name", EXACT_BACKENDS)
def test_property_any_shape_matches_oracle(backend_name):
    require_backend(backend_name)
    _check_any_shape_matches_oracle(backend_name)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    b=st.integers(0, 7),
    k_classes=st.integers(1, 12),
    dim=st.integers(1, 9),
    grid=st.booleans(),
    data=st.data(),
)
def _check_any_shape_matches_oracle(backend_name, seed, b, k_classes, dim, grid, data):
    """Small random shapes; integer-grid values make many exact ties."""
    rng = np.random.default_rng(seed)
    if grid:
        c = rng.integers(-2, 3, size=(k_classes, dim)).astype(np.float32)
        x = rng.integers(-2, 3, size=(b, dim)).astype(np.float32)
    else:
        c = (rng.standard_normal((k_classes, dim)) * 10.0 ** rng.uniform(-3, 3)).astype(np.float32)
        x = (rng.standard_normal((b, dim)) * 10.0 ** rng.uniform(-3, 3)).astype(np.float32)
    k = data.draw(st.integers(1, k_classes))
    dist, idx = CentroidIndex(c, backend=backend_name).search(x, k=k)
    assert_matches_oracle(dist, idx, x, c, k)
    reach = oltr.reachability(x, c, scale=10.0, backend=backend_name)
    assert reach.shape == (b,) and np.all(np.isfinite(reach))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_faiss_approximate_distances_exact_for_returned_ids(kind):
    """Approximate indexes: recall may miss, but returned distances are exact and sorted."""
    rng = np.random.default_rng(9)
    centers = 20.0 * rng.standard_normal((2000, 32))
    c = centers.astype(np.float32)
    x = (centers[rng.integers(0, 2000, 200)] + 0.1 * rng.standard_normal((200, 32))).astype(np.float32)
    index = CentroidIndex(c, backend="faiss", faiss_options=FaissOptions(index=kind, nprobe=8))
    dist, idx = index.search(x, k=4)
    ref = oracle_distances(x, c)
    assert np.all(np.diff(dist, axis=1) >= 0)
    np.testing.assert_allclose(dist, np.take_along_axis(ref, idx, axis=1), rtol=1e-5, atol=1e-7)
    recall_at_1 = np.mean(idx[:, 0] == ref.argmin(axis=1))
    assert recall_at_1 >= 0.95  # well-separated clusters: both indexes find nearly all


def test_faiss_approximate_rows_with_too_few_candidates_fall_back_to_exact():
    """IVF visiting 1 of 8 cells cannot return k = K neighbours: those rows are answered
    exactly instead of padding with FAISS's -1."""
    rng = np.random.default_rng(4)
    c = rng.standard_normal((400, 16)).astype(np.float32)
    x = rng.standard_normal((10, 16)).astype(np.float32)
    index = CentroidIndex(c, faiss_options=FaissOptions(index="ivf", nlist=8, nprobe=1))
    dist, idx = index.search(x, k=400)
    assert_matches_oracle(dist, idx, x, c, 400)


def test_torch_backend_in_many_small_blocks(monkeypatch):
    """Force the B-chunking and pair-blocking paths; results and gradients unchanged."""
    from oltr.memory import _exact, _torch

    rng = np.random.default_rng(8)
    c = rng.standard_normal((50, 12)).astype(np.float32)
    x = rng.standard_normal((23, 12)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    dist_ref, idx_ref = oltr.nearest_centroids(xt, c, k=3, backend="torch")
    dist_ref.sum().backward()
    grad_ref = xt.grad.clone()

    monkeypatch.setattr(_torch, "_SCORE_BLOCK_BYTES", 4 * 50 * 4)  # 4 queries per block
    monkeypatch.setattr(_exact, "_PAIR_BLOCK_BYTES", 8 * 12 * 5)  # 5 float64 pairs per block
    xt.grad = None
    dist, idx = oltr.nearest_centroids(xt, c, k=3, backend="torch")
    dist.sum().backward()
    assert_matches_oracle(dist.detach(), idx, x, c, 3)
    torch.testing.assert_close(idx, idx_ref)
    torch.testing.assert_close(dist, dist_ref)
    torch.testing.assert_close(xt.grad, grad_ref)
