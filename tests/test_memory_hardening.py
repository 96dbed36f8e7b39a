"""Hostile inputs to the memory and the scores: extreme magnitudes, callers that mutate their
centroids, absurd thread counts, complex features, float64 models, one NearestCentroid."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import oltr
from oltr.memory import CentroidIndex, FaissOptions, nearest_centroids, reachability
from oltr.memory import threads as threads_module
from test_memory_support import EXACT_BACKENDS, oracle_distances, require_backend

MAGNITUDES = (1e-40, 1e-25, 1e-15, 1.0, 1e15, 1e19, 1e30)
# (centroid magnitude, query magnitude): big centroids with small queries and the reverse
MIXED = ((1e19, 1e-25), (1e-25, 1e19), (1e30, 1e-40), (1e-40, 1e30), (1.0, 1e30), (1e30, 1.0),
         (1e-40, 1.0), (1e15, 1e-15))
SCALE_PAIRS = [(m, m) for m in MAGNITUDES] + list(MIXED)


@pytest.fixture(params=EXACT_BACKENDS)
def backend(request) -> str:
    require_backend(request.param)
    return request.param


def _rust_available() -> bool:
    try:
        import oltr._core  # noqa: F401
    except ImportError:
        return False
    return True


def _scaled_problem(c_scale: float, x_scale: float, seed: int = 0, num_classes: int = 9,
                    dim: int = 7, batch: int = 11):
    """float32 centroids and queries of the given magnitudes; some queries sit near centroids."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((num_classes, dim))
    x = rng.standard_normal((batch, dim))
    if c_scale == x_scale:
        x[:4] = c[:4] + 1e-3 * rng.standard_normal((4, dim))
    with np.errstate(under="ignore"):
        return (c * c_scale).astype(np.float32), (x * x_scale).astype(np.float32)


def _f32_ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a − b| in float32 ulps of b (subnormals included; inf equals inf)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    same = (a == b)
    gap = np.abs(a.astype(np.float64) - b.astype(np.float64))
    with np.errstate(invalid="ignore"):
        return np.where(same, 0.0, gap / np.spacing(np.abs(b)).astype(np.float64))


def _exact_squared_distance(a: np.ndarray, b: np.ndarray) -> int:
    """‖a − b‖² of float32 vectors, exactly, in units of 2^-298: every float32 is an integer
    multiple of 2^-149 (and ×2^149 is exact in float64), so integer arithmetic is exact."""
    ia = [int(v) for v in np.asarray(a, np.float64) * 2.0**149]
    ib = [int(v) for v in np.asarray(b, np.float64) * 2.0**149]
    return sum((p - q) ** 2 for p, q in zip(ia, ib))


def assert_exact(dist, idx, x, c, k):
    """The exact answer, as far as float64 can tell: the oracle distances of the returned
    indices are the oracle's k smallest, in order (to 1e-12 relative: mixed magnitudes such as
    ‖x‖ = 1e12, ‖c‖ = 1e-3 make distances that differ only in float64's last bits, which no
    float64 computation orders reliably); exactly equal distances (integer arithmetic) come by
    lower index; the returned distances are the oracle's rounded to float32 (≤ 1 ulp)."""
    dist = dist.numpy() if isinstance(dist, torch.Tensor) else dist
    idx = idx.numpy() if isinstance(idx, torch.Tensor) else idx
    ref = oracle_distances(x, c)
    assert dist.dtype == np.float32 and idx.dtype == np.int64
    assert dist.shape == idx.shape == (ref.shape[0], k)
    assert all(len(set(row)) == k for row in idx.tolist()), "duplicate indices in a row"
    at_idx = np.take_along_axis(ref, idx, axis=1)
    smallest = np.sort(ref, axis=1)[:, :k]
    close = np.abs(at_idx - smallest) <= 1e-12 * smallest  # float64: finite for float32 inputs
    assert np.all(close), (idx, at_idx, smallest)
    for row in range(ref.shape[0]):  # exact ties: lower index first, selected before higher
        tied = np.flatnonzero(np.isin(ref[row], at_idx[row]))
        if len(tied) == len(set(at_idx[row].tolist())):
            continue  # float64 sees no tie among or with the selected distances
        exact = {int(t): _exact_squared_distance(x[row], c[t]) for t in tied}
        for j in range(k):
            same = np.array([t for t in exact if exact[t] == exact[int(idx[row, j])]])
            assert np.all(same[~np.isin(same, idx[row])] > idx[row, j]), f"row {row}: tie order"
            assert np.all(same[np.isin(same, idx[row, j + 1:])] > idx[row, j]), f"row {row}: tie order"
    with np.errstate(over="ignore"):
        want_dist = at_idx.astype(np.float32)
    assert np.all(_f32_ulps(dist, want_dist) <= 1.0), (dist, want_dist)


# ---------------------------------------------------------------- extreme magnitudes
@pytest.mark.parametrize("c_scale, x_scale", SCALE_PAIRS, ids=[f"c{c:g}-x{x:g}" for c, x in SCALE_PAIRS])
@pytest.mark.parametrize("k", ["1", "K"])
def test_search_is_exact_at_every_magnitude(backend, c_scale, x_scale, k):
    c, x = _scaled_problem(c_scale, x_scale)
    k = 1 if k == "1" else c.shape[0]
    index = CentroidIndex(c, backend=backend)
    dist, idx = index.search(x, k=k)
    assert_exact(dist, idx, x, c, k)
    dist_t, idx_t = index.search(torch.from_numpy(x), k=k)  # torch in, torch out
    assert isinstance(dist_t, torch.Tensor)
    assert_exact(dist_t, idx_t, x, c, k)
    torch_index = CentroidIndex(torch.from_numpy(c).double(), backend=backend)  # torch centroids
    np.testing.assert_array_equal(torch_index.search(x.astype(np.float64), k=k)[1], idx)
    if backend != "rust" and _rust_available():
        d_rust, i_rust = CentroidIndex(c, backend="rust").search(x, k=k)
        np.testing.assert_array_equal(idx, i_rust)
        assert np.all(_f32_ulps(dist, d_rust) <= 1.0)


@pytest.mark.parametrize("c_scale, x_scale", SCALE_PAIRS, ids=[f"c{c:g}-x{x:g}" for c, x in SCALE_PAIRS])
def test_many_centroids_at_every_magnitude(backend, c_scale, x_scale):
    """K = 80 > k + FAISS's extra candidates: the candidate cut-off and its near-tie check
    run on rescaled scores; many queries sit 1e-3 (relative) from a centroid."""
    c, x = _scaled_problem(c_scale, x_scale, seed=4, num_classes=80, dim=24, batch=30)
    index = CentroidIndex(c, backend=backend)
    for k in (1, 5):
        assert_exact(*index.search(x, k=k), x, c, k)


@pytest.mark.parametrize("c_scale, x_scale", SCALE_PAIRS, ids=[f"c{c:g}-x{x:g}" for c, x in SCALE_PAIRS])
def test_reachability_is_exact_at_every_magnitude(backend, c_scale, x_scale):
    c, x = _scaled_problem(c_scale, x_scale, seed=1)
    eps = oltr.memory.REACHABILITY_EPS
    want = (10.0 / np.maximum(oracle_distances(x, c).min(axis=1), eps)).astype(np.float32)
    for reach in (CentroidIndex(c, backend=backend).reachability(x, scale=10.0),
                  reachability(torch.from_numpy(x), torch.from_numpy(c), scale=10.0, backend=backend)):
        reach = reach.numpy() if isinstance(reach, torch.Tensor) else reach
        assert reach.dtype == np.float32 and np.all(np.isfinite(reach))
        assert np.all(_f32_ulps(reach, want) <= 2.0), (reach, want)


def test_distances_beyond_float32_are_inf_with_the_exact_order(backend):
    """‖x − c‖ > float32's max: inf, as the Rust core returns, but still ranked exactly."""
    c = np.array([[3e38, 0.0], [-3e38, 0.0], [-2e38, 2e38], [0.0, 0.0]], np.float32)
    x = np.array([[-3e38, 0.0], [3e38, 1e38]], np.float32)
    dist, idx = CentroidIndex(c, backend=backend).search(x, k=4)
    np.testing.assert_array_equal(idx, np.argsort(oracle_distances(x, c), axis=1, kind="stable"))
    assert np.isinf(dist[0, -1]) and np.isinf(dist[1, -1]) and dist[0, 0] == 0.0
    reach = CentroidIndex(c, backend=backend).reachability(x[1:])
    assert _f32_ulps(reach, np.float32(10.0 / oracle_distances(x[1:], c).min()))[0] <= 2.0


@pytest.mark.parametrize("backend_name", EXACT_BACKENDS)
def test_property_any_magnitudes_are_exact(backend_name):
    require_backend(backend_name)
    _check_any_magnitudes_are_exact(backend_name)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), c_exp=st.integers(-44, 37), x_exp=st.integers(-44, 37),
       k_classes=st.integers(1, 10), dim=st.integers(1, 8), b=st.integers(1, 6),
       grid=st.booleans(), data=st.data())
def _check_any_magnitudes_are_exact(backend_name, seed, c_exp, x_exp, k_classes, dim, b, grid,
                                    data):
    """Centroids and queries of independent magnitudes 1e-44 .. 1e37, any k; or both on a
    scaled integer grid (many exact ties at every magnitude)."""
    rng = np.random.default_rng(seed)
    draw = ((lambda shape: rng.integers(-2, 3, shape)) if grid else rng.standard_normal)
    with np.errstate(under="ignore"):
        c = (draw((k_classes, dim)) * 10.0**c_exp).astype(np.float32)
        x = (draw((b, dim)) * 10.0**(c_exp if grid else x_exp)).astype(np.float32)
    k = data.draw(st.integers(1, k_classes))
    assert_exact(*CentroidIndex(c, backend=backend_name).search(x, k=k), x, c, k)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("scale", [1e-40, 1e-25, 1e19, 1e30])
def test_faiss_approximate_indexes_at_extreme_magnitudes(kind, scale):
    """HNSW / IVF rescale by a power of two: the same answers as at magnitude 1, exact
    distances for the returned indices."""
    rng = np.random.default_rng(2)
    centers = rng.standard_normal((400, 16))
    queries = centers[rng.integers(0, 400, 50)] + 0.05 * rng.standard_normal((50, 16))
    options = FaissOptions(index=kind, nprobe=4)
    base = CentroidIndex(centers.astype(np.float32), faiss_options=options)
    _, idx_base = base.search(queries.astype(np.float32), k=3)
    c = (centers * scale).astype(np.float32)
    x = (queries * scale).astype(np.float32)
    dist, idx = CentroidIndex(c, faiss_options=options).search(x, k=3)
    assert np.mean(idx[:, 0] == idx_base[:, 0]) >= 0.9
    ref = np.take_along_axis(oracle_distances(x, c), idx, axis=1).astype(np.float32)
    assert np.all(_f32_ulps(dist, ref) <= 1.0)


def test_gradients_at_extreme_magnitudes_match_the_official_formula():
    for scale in (1e-25, 1e19):
        gen = torch.Generator().manual_seed(0)
        c = torch.randn(10, 6, generator=gen, dtype=torch.float64) * scale
        x0 = torch.randn(5, 6, generator=gen, dtype=torch.float64) * scale
        x = x0.float().requires_grad_(True)
        dist, idx = nearest_centroids(x, c.float(), k=1, backend="torch")
        (dist / scale).sum().backward()
        x64 = x.detach().double()
        c64 = c.float().double()
        diff = x64 - c64[idx[:, 0]]
        want = diff / torch.linalg.vector_norm(diff, dim=1, keepdim=True) / scale
        torch.testing.assert_close(x.grad.double(), want, rtol=1e-5, atol=0)


# ---------------------------------------------------------------- snapshot semantics
def _mutations(c: np.ndarray):
    """(name, make the caller's object, mutate it in place)."""
    return [
        ("numpy float32", lambda: c.copy(), lambda a: a.__setitem__(slice(None), 0.0)),
        ("numpy float32 row", lambda: c.copy(), lambda a: a.__setitem__(0, a[5])),
        ("numpy float64", lambda: c.astype(np.float64), lambda a: np.multiply(a, -3.0, out=a)),
        ("numpy fortran", lambda: np.asfortranarray(c), lambda a: a.__setitem__(slice(None), 1.0)),
        ("torch float32", lambda: torch.from_numpy(c.copy()), lambda t: t.add_(100.0)),
        ("torch float32 .data", lambda: torch.from_numpy(c.copy()), lambda t: t.data.zero_()),
        ("torch float64", lambda: torch.from_numpy(c.astype(np.float64)), lambda t: t.copy_(-t)),
        ("torch view of numpy", lambda: torch.from_numpy(c.copy()), lambda t: t.numpy().fill(2.0)),
    ]


@pytest.mark.parametrize("case", range(8))
def test_the_index_owns_a_snapshot_of_the_centroids(backend, case):
    rng = np.random.default_rng(3)
    c = rng.standard_normal((12, 5)).astype(np.float32)
    x = rng.standard_normal((9, 5)).astype(np.float32)
    name, make, mutate = _mutations(c)[case]
    caller = make()
    index = CentroidIndex(caller, backend=backend)
    before = index.search(x, k=4)
    mutate(caller)
    assert not np.array_equal(np.asarray(caller, dtype=np.float32), c), name  # it did change
    after = index.search(x, k=4)
    np.testing.assert_array_equal(after[1], before[1], err_msg=name)
    np.testing.assert_array_equal(after[0], before[0], err_msg=name)
    np.testing.assert_array_equal(index.reachability(x), CentroidIndex(c, backend=backend).reachability(x))
    assert_exact(*after, x, c, 4)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_faiss_indexes_own_a_snapshot(kind):
    rng = np.random.default_rng(4)
    c = rng.standard_normal((300, 8)).astype(np.float32)
    x = rng.standard_normal((20, 8)).astype(np.float32)
    caller = c.copy()
    index = CentroidIndex(caller, faiss_options=FaissOptions(index=kind))
    before = index.search(x, k=3)
    caller[:] = caller[::-1]
    after = index.search(x, k=3)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])


def test_torch_snapshot_keeps_autograd_to_the_callers_centroids():
    """The torch backend's snapshot is a clone: gradients still reach the caller's leaf, and
    an optimizer step on the leaf afterwards changes neither the index nor its gradients."""
    gen = torch.Generator().manual_seed(5)
    leaf = torch.randn(10, 4, generator=gen).requires_grad_(True)
    reference = leaf.detach().clone().requires_grad_(True)
    x = torch.randn(6, 4, generator=gen)
    index = CentroidIndex(leaf, backend="torch")
    with pytest.raises(RuntimeError):  # in place on a leaf that requires grad: refused by torch
        leaf.add_(1.0)
    dist, idx = index.search(x, k=2)
    with torch.no_grad():
        leaf.add_(50.0)  # what an optimizer step does
    (10.0 / dist).sum().backward()
    d_ref = torch.linalg.vector_norm(x[:, None, :] - reference[None], dim=2)
    (10.0 / torch.sort(d_ref, dim=1).values[:, :2]).sum().backward()
    torch.testing.assert_close(leaf.grad, reference.grad, rtol=1e-5, atol=1e-6)
    dist2, idx2 = index.search(x, k=2)  # still the snapshot's answers
    assert torch.equal(idx2, idx) and torch.equal(dist2.detach(), dist.detach())
    # the functional form and the model path differentiate into centroids that require grad
    leaf.grad = None
    d_fn, _ = nearest_centroids(x, leaf, k=1, backend="torch")
    d_fn.sum().backward()
    assert leaf.grad is not None and bool(leaf.grad.abs().sum() > 0)


# ---------------------------------------------------------------- thread counts
@pytest.fixture
def restore_threads():
    with threads_module.using_num_threads(threads_module.get_num_threads()):
        yield


def test_max_num_threads_is_eight_per_cpu():
    assert threads_module.MAX_NUM_THREADS == 8 * (os.cpu_count() or 1)
    assert oltr.memory.MAX_NUM_THREADS == threads_module.MAX_NUM_THREADS


@pytest.mark.parametrize("bad, error", [
    (4096 if threads_module.MAX_NUM_THREADS < 4096 else threads_module.MAX_NUM_THREADS + 1, ValueError),
    (10**9, ValueError),
    (threads_module.MAX_NUM_THREADS + 1, ValueError),
    (np.int64(threads_module.MAX_NUM_THREADS + 1), ValueError),
    (0, ValueError),
    (-1, ValueError),
    (-(10**9), ValueError),
    (True, TypeError),
    (False, TypeError),
    (2.0, TypeError),
    (float("inf"), TypeError),
    ("4", TypeError),
    (None, TypeError),
])
def test_set_num_threads_rejects_out_of_range_and_non_integers(restore_threads, bad, error):
    oltr.set_num_threads(2)
    with pytest.raises(error, match=r"\bn\b"):
        oltr.set_num_threads(bad)
    assert oltr.get_num_threads() == 2  # unchanged by the refused call
    with pytest.raises(error, match=r"\bn\b"), threads_module.using_num_threads(bad):
        pass  # pragma: no cover - never entered
    assert oltr.get_num_threads() == 2


def test_thread_count_bounds_are_inclusive_and_named(restore_threads, monkeypatch):
    limit = threads_module.MAX_NUM_THREADS
    oltr.set_num_threads(limit)
    assert oltr.get_num_threads() == limit
    oltr.set_num_threads(1)
    with pytest.raises(ValueError, match=f"MAX_NUM_THREADS = {limit}"):
        oltr.set_num_threads(limit + 1)
    monkeypatch.setattr(threads_module, "_configured", None)
    monkeypatch.setenv("OLTR_NUM_THREADS", str(limit + 1))
    with pytest.raises(ValueError, match="OLTR_NUM_THREADS must be <= MAX_NUM_THREADS"):
        oltr.get_num_threads()
    monkeypatch.setenv("OLTR_NUM_THREADS", "-3")
    with pytest.raises(ValueError, match="OLTR_NUM_THREADS must be >= 1"):
        oltr.get_num_threads()
    monkeypatch.setenv("OLTR_NUM_THREADS", str(limit))
    assert oltr.get_num_threads() == limit


def test_using_num_threads_restores_a_torch_count_above_the_maximum(restore_threads, monkeypatch):
    """torch may have been given more threads than oltr accepts: the block still restores it."""
    monkeypatch.setattr(threads_module, "_configured", None)
    monkeypatch.delenv("OLTR_NUM_THREADS", raising=False)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads_module.MAX_NUM_THREADS + 3)
    try:
        assert oltr.get_num_threads() == threads_module.MAX_NUM_THREADS  # what the core gets
        with threads_module.using_num_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == threads_module.MAX_NUM_THREADS + 3
    finally:
        torch.set_num_threads(saved)


# ---------------------------------------------------------------- complex features
def _complex_variants(a: np.ndarray):
    return {
        "numpy complex64": a.astype(np.complex64),
        "numpy complex128": a + 1j,
        "torch complex64": torch.from_numpy(a.astype(np.complex64)),
        "torch complex128": torch.from_numpy(a.astype(np.complex128)),
        "list with complex": [[complex(v, 1.0) for v in row] for row in a.tolist()],
    }


@pytest.mark.parametrize("variant", ["numpy complex64", "numpy complex128", "torch complex64",
                                     "torch complex128", "list with complex"])
def test_memory_rejects_complex_features(backend, variant):
    rng = np.random.default_rng(6)
    c = rng.standard_normal((5, 3)).astype(np.float32)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    bad_x, bad_c = _complex_variants(x)[variant], _complex_variants(c)[variant]
    index = CentroidIndex(c, backend=backend)
    for call in (lambda: index.search(bad_x), lambda: index.reachability(bad_x),
                 lambda: nearest_centroids(bad_x, c, backend=backend),
                 lambda: reachability(bad_x, c, backend=backend)):
        with pytest.raises(TypeError, match=r"^x must be real, got complex"):
            call()
    for call in (lambda: CentroidIndex(bad_c, backend=backend),
                 lambda: nearest_centroids(x, bad_c, backend=backend)):
        with pytest.raises(TypeError, match=r"^centroids must be real, got complex"):
            call()


@pytest.mark.parametrize("variant", ["numpy complex64", "numpy complex128", "torch complex64",
                                     "torch complex128", "list with complex"])
def test_scores_reject_complex_inputs(variant):
    from oltr import scores

    rng = np.random.default_rng(7)
    feats = rng.standard_normal((6, 3)).astype(np.float32)
    c = rng.standard_normal((2, 3)).astype(np.float32)
    bad_f, bad_c = _complex_variants(feats)[variant], _complex_variants(c)[variant]
    for fn in (scores.msp_score, scores.max_logit_score, scores.energy_score,
               lambda z: scores.score_from_logits("energy", z), scores.MaxSoftmax(),
               scores.MaxLogit(), scores.EnergyBased()):
        with pytest.raises(TypeError, match=r"^logits must be real, got complex"):
            fn(bad_f)
    for fn in (scores.centroid_distance_score, scores.reachability_score):
        with pytest.raises(TypeError, match=r"^features must be real, got complex"):
            fn(bad_f, c)
        with pytest.raises(TypeError, match=r"^centroids must be real, got complex"):
            fn(feats, bad_c)
    labels = [0, 1, 0, 1, 0, 1]
    for det in (scores.NearestCentroid(), scores.Reachability()):
        with pytest.raises(TypeError, match=r"^features must be real, got complex"):
            det.fit(bad_f, labels)
        with pytest.raises(TypeError, match=r"^centroids must be real, got complex"):
            det.fit_centroids(bad_c)
        det.fit(feats, labels)
        with pytest.raises(TypeError, match=r"^features must be real, got complex"):
            det.predict(bad_f)
    with pytest.raises(TypeError, match=r"^features must be real, got complex"):
        scores.class_means(bad_f, labels)
    from oltr.scores.knn import KNN
    from oltr.scores.mahalanobis import RMD, Mahalanobis
    from oltr.scores.react import ReAct
    from oltr.scores.vim import ViM

    train = rng.standard_normal((40, 3))
    train_labels = np.arange(40) % 2
    head = (rng.standard_normal((2, 3)), rng.standard_normal(2))
    bad_weight = _complex_variants(head[0])[variant]
    bad_bias = _complex_variants(head[1][None])[variant][0]
    for det in (KNN(k=2), Mahalanobis(), RMD(), ViM(1, head=head), ReAct(90, head=head)):
        with pytest.raises(TypeError, match=r"^features must be real, got complex"):
            det.fit(_complex_variants(train)[variant], train_labels)
        det.fit(train, train_labels)
        with pytest.raises(TypeError, match=r"^features must be real, got complex"):
            det.predict(bad_f)
    for make in (lambda h: ViM(1, head=h), lambda h: ReAct(90, head=h)):
        with pytest.raises(TypeError, match=r"^head weight must be real, got complex"):
            make((bad_weight, head[1])).fit(train)
        with pytest.raises(TypeError, match=r"^head bias must be real, got complex"):
            make((head[0], bad_bias)).fit(train)
    with pytest.raises(TypeError, match=r"^labels must be real, got complex"):
        scores.class_means(feats, np.array(labels) + 0j)


# ---------------------------------------------------------------- float64 models
def test_float64_nearest_is_float64_exact_where_float32_cannot_tell():
    """Two centroids whose distances to x differ by 1e-12 (relative): float32 sees a tie,
    the float64 path picks the nearer one and returns its float64 distance."""
    from oltr.memory._torch import nearest_float64
    from oltr.nn._nearest import NearestCentroidDispatch

    x = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    c = torch.tensor([[0.0, 0.0, 0.0], [2.0 + 1e-12, 0.0, 0.0], [0.0, 5.0, 0.0]], dtype=torch.float64)
    c = torch.stack([c[1], c[0], c[2]])  # the farther one first: a float32 tie picks it
    _, idx32 = nearest_centroids(x, c, backend="torch")
    assert int(idx32[0, 0]) == 0  # float32 cannot separate them
    dist, idx = nearest_float64(x, c, k=2)
    assert dist.dtype == torch.float64
    assert idx.tolist() == [[1, 0]]
    assert dist[0, 0].item() == 1.0 and dist[0, 1].item() == 1.0 + 1e-12
    for backend in ("auto", "torch", "rust"):
        dispatch = NearestCentroidDispatch(backend)
        assert not dispatch.uses_rust(x, c)
        with torch.no_grad():
            d, i = dispatch(x, c)
        assert d.dtype == torch.float64 and int(i[0]) == 1 and d[0].item() == 1.0


def _float64_oracle(x: torch.Tensor, c: torch.Tensor):
    d = torch.linalg.vector_norm(x[:, None, :] - c[None], dim=2)
    return d.min(dim=1)


@pytest.mark.parametrize("backend", ["auto", "torch", "rust"])
def test_float64_model_gets_float64_distances(backend):
    from oltr.nn import MetaEmbeddingClassifier

    torch.manual_seed(0)
    layer = MetaEmbeddingClassifier(16, 30, nearest_backend=backend).double()
    x = torch.randn(40, 16, dtype=torch.float64)
    c = torch.randn(30, 16, dtype=torch.float64) * 3
    x[:10] = c[:10] + 1e-9 * torch.randn(10, 16, dtype=torch.float64)  # float32 would round these
    want = _float64_oracle(x, c)
    layer.eval()
    with torch.no_grad():
        _, extras = layer(x, c)
    assert extras.reachability.dtype == torch.float64
    assert torch.equal(extras.nearest, want.indices)
    torch.testing.assert_close(extras.reachability, 10.0 / want.values, rtol=1e-13, atol=0)
    layer.train()
    xg = x.clone().requires_grad_(True)
    logits, extras = layer(xg, c)
    torch.testing.assert_close(extras.reachability.detach(), 10.0 / want.values, rtol=1e-13, atol=0)
    logits.sum().backward()
    assert xg.grad.dtype == torch.float64 and torch.isfinite(xg.grad).all()


def test_float64_path_errors_name_the_argument():
    from oltr.memory._torch import nearest_float64

    c = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="^x is too large for float64"):
        nearest_float64(torch.full((2, 3), 1e200, dtype=torch.float64), c)
    with pytest.raises(ValueError, match="^x is too small for float64"):
        nearest_float64(torch.full((2, 3), 1e-200, dtype=torch.float64), c * 1e-200)
    with pytest.raises(ValueError, match="^centroids is too large for float64"):
        nearest_float64(torch.ones(2, 3, dtype=torch.float64), c * 1e150)
    d, i = nearest_float64(torch.ones(2, 3, dtype=torch.float64) * 1e100, c * 1e100)
    assert torch.isfinite(d).all()
    with pytest.raises(ValueError, match=r"\bx\b.*NaN or Inf"):
        nearest_float64(torch.tensor([[np.nan, 0.0, 0.0]], dtype=torch.float64), c)
    with pytest.raises(TypeError, match="^x must be real, got complex"):
        nearest_float64(torch.zeros(2, 3, dtype=torch.complex128), c)
    d, i = nearest_float64(torch.zeros(0, 3, dtype=torch.float64), c, k=2)
    assert d.shape == (0, 2) and d.dtype == torch.float64 and i.dtype == torch.int64
    d, i = nearest_float64(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64))
    assert d.tolist() == [[0.0], [0.0]] and i.tolist() == [[0], [0]]


# ---------------------------------------------------------------- one NearestCentroid
def test_one_class_named_nearest_centroid():
    from oltr.nn import _nearest
    from oltr.scores import Detector, NearestCentroid

    assert issubclass(NearestCentroid, Detector)  # the documented public name
    assert not hasattr(_nearest, "NearestCentroid")
    assert _nearest.NearestCentroidDispatch.__name__ == "NearestCentroidDispatch"
