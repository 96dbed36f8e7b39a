"""The memory API: bad inputs, empty batches, output types, no-copy, threads, autograd."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import oltr
from oltr.memory import CentroidIndex, FaissOptions, nearest_centroids, reachability
from oltr.memory import threads as threads_module
from test_memory_support import EXACT_BACKENDS, oracle_distances, require_backend


@pytest.fixture(params=EXACT_BACKENDS)
def backend(request) -> str:
    require_backend(request.param)
    return request.param


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((20, 6)).astype(np.float32),
            rng.standard_normal((5, 6)).astype(np.float32))


def test_top_level_names_resolve():
    for name in ("CentroidIndex", "nearest_centroids", "reachability",
                 "set_num_threads", "get_num_threads"):
        assert getattr(oltr, name) is getattr(oltr.memory, name)


# ---------------------------------------------------------------- bad inputs
def _with_value(array, value):
    out = array.copy()
    out[1, 2] = value
    return out


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_queries_and_centroids_raise(backend, data, bad):
    c, x = data
    index = CentroidIndex(c, backend=backend)
    with pytest.raises(ValueError, match=r"\bx\b.*NaN or Inf"):
        index.search(_with_value(x, bad))
    with pytest.raises(ValueError, match=r"\bx\b.*NaN or Inf"):
        index.reachability(_with_value(x, bad))
    with pytest.raises(ValueError, match="centroids.*NaN or Inf"):
        CentroidIndex(_with_value(c, bad), backend=backend)


def test_float64_overflowing_float32_raises(backend, data):
    c, x = data
    big = x.astype(np.float64)
    big[0, 0] = 1e300
    with pytest.raises(ValueError, match=r"\bx\b.*NaN or Inf"):
        CentroidIndex(c, backend=backend).search(big)


@pytest.mark.parametrize("k", [0, -1, 21])
def test_k_out_of_range_raises(backend, data, k):
    c, x = data
    with pytest.raises(ValueError, match="k must satisfy"):
        CentroidIndex(c, backend=backend).search(x, k=k)


def test_k_wrong_type_raises(data):
    c, x = data
    with pytest.raises(TypeError, match="k must be an integer"):
        CentroidIndex(c, backend="torch").search(x, k=1.5)


def test_shape_errors_raise(backend, data):
    c, x = data
    index = CentroidIndex(c, backend=backend)
    with pytest.raises(ValueError, match="x has dimension D=5"):
        index.search(x[:, :5])
    with pytest.raises(ValueError, match="x must be 2-D"):
        index.search(x[0])
    with pytest.raises(ValueError, match="x must be 2-D"):
        index.search(x[None])
    with pytest.raises(ValueError, match="centroids is empty"):
        CentroidIndex(np.zeros((0, 6), np.float32), backend=backend)
    with pytest.raises(ValueError, match="centroids must be 2-D"):
        CentroidIndex(c[0], backend=backend)
    with pytest.raises(ValueError, match="centroids has dimension D=0"):
        CentroidIndex(np.zeros((3, 0), np.float32), backend=backend)


def test_wrong_dtype_raises_type_error(data):
    c, x = data
    with pytest.raises(TypeError, match="centroids must be float32 or float64"):
        CentroidIndex(c.astype(np.int64), backend="torch")
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        CentroidIndex(c, backend="torch").search(torch.from_numpy(x).half())


@pytest.mark.parametrize("name", ["cuda", "Rust", "", None, "faiss-hnsw"])
def test_unknown_backend_raises(data, name):
    c, x = data
    with pytest.raises(ValueError, match="backend must be one of"):
        CentroidIndex(c, backend=name)
    with pytest.raises(ValueError, match="backend must be one of"):
        nearest_centroids(x, c, backend=name)


@pytest.mark.parametrize("kwargs, message", [
    ({"scale": 0.0}, "scale must be finite and > 0"),
    ({"scale": -1.0}, "scale must be finite and > 0"),
    ({"scale": float("nan")}, "scale must be finite and > 0"),
    ({"eps": 0.0}, "eps must be finite and > 0"),
    ({"eps": -1e-3}, "eps must be finite and > 0"),
    ({"scale": 1e30, "eps": 1e-12}, "scale / eps overflows float32"),
])
def test_bad_scale_or_eps_raises(backend, data, kwargs, message):
    c, x = data
    with pytest.raises(ValueError, match=message):
        CentroidIndex(c, backend=backend).reachability(x, **kwargs)


def test_faiss_options_validation(data):
    c, _ = data
    with pytest.raises(ValueError, match="FaissOptions.index"):
        FaissOptions(index="lsh")
    with pytest.raises(ValueError, match="FaissOptions.ef_search"):
        FaissOptions(index="hnsw", ef_search=0)
    with pytest.raises(ValueError, match="FaissOptions.nlist must be >= 1"):
        FaissOptions(index="ivf", nlist=0)
    with pytest.raises(ValueError, match="only valid with backend='faiss'"):
        CentroidIndex(c, backend="torch", faiss_options=FaissOptions(index="hnsw"))
    index = CentroidIndex(c, faiss_options=FaissOptions(index="hnsw"))  # "auto" -> faiss
    assert index.backend == "faiss"


# ---------------------------------------------------------------- shapes and types
def test_empty_batch_returns_empty_results(backend, data):
    c, _ = data
    index = CentroidIndex(c, backend=backend)
    dist, idx = index.search(np.zeros((0, 6), np.float32), k=3)
    assert dist.shape == (0, 3) and dist.dtype == np.float32
    assert idx.shape == (0, 3) and idx.dtype == np.int64
    assert index.reachability(np.zeros((0, 6))).shape == (0,)
    dist_t, idx_t = index.search(torch.zeros(0, 6), k=2)
    assert isinstance(dist_t, torch.Tensor) and tuple(dist_t.shape) == (0, 2)
    assert idx_t.dtype == torch.int64


def test_zero_distance_reachability_is_finite(backend, data):
    c, _ = data
    reach = CentroidIndex(c, backend=backend).reachability(c[:4], scale=10.0)
    np.testing.assert_allclose(reach, 10.0 / oltr.memory.REACHABILITY_EPS, rtol=1e-6)
    reach = CentroidIndex(c, backend=backend).reachability(c[:4], scale=2.0, eps=1e-3)
    np.testing.assert_allclose(reach, 2000.0, rtol=1e-6)


def test_functional_forms_match_index(backend, data):
    c, x = data
    dist, idx = nearest_centroids(x, c, k=2, backend=backend)
    d2, i2 = CentroidIndex(c, backend=backend).search(x, k=2)
    np.testing.assert_array_equal(idx, i2)
    np.testing.assert_array_equal(dist, d2)
    reach = reachability(x, c, scale=3.0, backend=backend)
    np.testing.assert_allclose(reach, 3.0 / oracle_distances(x, c).min(axis=1), rtol=1e-5)


def test_auto_picks_rust_when_core_is_built(data):
    c, _ = data
    try:
        import oltr._core  # noqa: F401
        expected = "rust"
    except ImportError:
        expected = "faiss"
    assert CentroidIndex(c).backend == expected


def _spy_on_backend(index):
    seen = []
    original = index._impl.search

    def spy(x, k):
        seen.append(x)
        return original(x, k)

    index._impl.search = spy
    return seen


def _shares(a, b) -> bool:
    as_np = [v.detach().numpy() if isinstance(v, torch.Tensor) else v for v in (a, b)]
    return np.shares_memory(*as_np)


def test_float32_contiguous_input_is_not_copied(backend, data):
    c, x = data
    index = CentroidIndex(c, backend=backend)
    seen = _spy_on_backend(index)
    index.search(x)
    xt = torch.from_numpy(x.copy())
    index.search(xt)
    index.search(x.astype(np.float64))
    assert _shares(seen[0], x)
    assert _shares(seen[1], xt)
    assert not _shares(seen[2], x)  # float64 must be converted (once)


# ---------------------------------------------------------------- autograd
def _official_sorted_distances(x, c):
    """MetaEmbeddingClassifier.py: expand, torch.norm(..., 2, 2), sort."""
    b, k = x.shape[0], c.shape[0]
    x_expand = x.unsqueeze(1).expand(-1, k, -1)
    c_expand = c.unsqueeze(0).expand(b, -1, -1)
    dist = torch.norm(x_expand - c_expand, 2, 2)
    values, _ = torch.sort(dist, dim=1)
    return values


@pytest.mark.parametrize("k", [1, 3])
def test_torch_gradient_matches_official_formula(k):
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(40, 16, generator=gen)
    x0 = torch.randn(12, 16, generator=gen, dtype=torch.float32)
    weights = torch.randn(12, k, generator=gen)

    x_ref = x0.clone().requires_grad_(True)
    values = _official_sorted_distances(x_ref, c)[:, :k]
    (10.0 / values * weights).sum().backward()

    x_ours = x0.clone().requires_grad_(True)
    dist, idx = nearest_centroids(x_ours, c, k=k, backend="torch")
    assert dist.requires_grad and dist.grad_fn is not None
    (10.0 / dist * weights).sum().backward()
    torch.testing.assert_close(dist.detach(), values.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


def test_torch_gradient_reaches_centroids_and_reachability():
    gen = torch.Generator().manual_seed(1)
    c_ref = torch.randn(30, 8, generator=gen).requires_grad_(True)
    c_ours = c_ref.detach().clone().requires_grad_(True)
    x = torch.randn(9, 8, generator=gen)
    (10.0 / _official_sorted_distances(x, c_ref)[:, 0]).sum().backward()
    reachability(x, c_ours, scale=10.0, backend="torch").sum().backward()
    torch.testing.assert_close(c_ours.grad, c_ref.grad, rtol=1e-5, atol=1e-6)


def test_auto_routes_grad_inputs_to_torch_and_others_refuse(backend, data):
    c, x = data
    xt = torch.from_numpy(x).requires_grad_(True)
    dist, _ = nearest_centroids(xt, c)  # auto -> torch because x requires grad
    assert dist.grad_fn is not None
    if backend != "torch":
        with pytest.raises(ValueError, match="x requires grad"):
            CentroidIndex(c, backend=backend).search(xt)
        with torch.no_grad():
            CentroidIndex(c, backend=backend).search(xt)  # fine without grad mode


# ---------------------------------------------------------------- threads
@pytest.fixture
def restore_threads():
    with threads_module.using_num_threads(threads_module.get_num_threads()):
        yield


def test_set_num_threads_applies_to_faiss_and_core(restore_threads):
    import faiss

    torch_threads = torch.get_num_threads()
    with threads_module.using_num_threads(1):
        assert oltr.get_num_threads() == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == torch_threads
    oltr.set_num_threads(1)
    assert oltr.get_num_threads() == 1
    assert faiss.omp_get_max_threads() == 1
    try:
        import oltr._core as core
    except ImportError:
        return
    assert core.get_num_threads() == 1


def test_thread_count_default_and_errors(restore_threads, monkeypatch):
    monkeypatch.setattr(threads_module, "_configured", None)
    monkeypatch.setenv("OLTR_NUM_THREADS", "3")
    assert oltr.get_num_threads() == 3
    monkeypatch.setenv("OLTR_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="OLTR_NUM_THREADS"):
        oltr.get_num_threads()
    monkeypatch.delenv("OLTR_NUM_THREADS")
    assert oltr.get_num_threads() == torch.get_num_threads()
    with pytest.raises(ValueError, match="n must be >= 1"):
        oltr.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be an integer"):
        oltr.set_num_threads(2.0)


def test_missing_core_gives_build_hint_and_auto_falls_back(monkeypatch, data):
    import sys

    from oltr.memory import _rust

    c, x = data
    monkeypatch.setattr(_rust, "_core", None)
    monkeypatch.setitem(sys.modules, "oltr._core", None)  # makes the import fail
    with pytest.raises(ImportError, match="make install"):
        CentroidIndex(c, backend="rust")
    index = CentroidIndex(c)
    assert index.backend == "faiss"
    dist, idx = index.search(x, k=2)
    assert dist.shape == (5, 2)
