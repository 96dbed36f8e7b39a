"""oltr._core.meta_embedding and oltr._core.cosine_logits: the head's formulas in float64,
argument validation, and a row's bits across batches, kernels and thread counts."""
from __future__ import annotations

import numpy as np
import pytest

from oltr import _core

F32_KERNELS = [k for k in _core.available_kernels() if k in ("avx512-f32", "avx2-f32", "portable-f32")]


def head_arrays(rng, b=6, d=40, k=90):
    x = rng.standard_normal((b, d), dtype=np.float32)
    weights = dict(
        hallucinator_t=(rng.standard_normal((d, k)) * 0.3).astype(np.float32),
        hallucinator_bias=rng.standard_normal(k).astype(np.float32),
        centroids=(rng.standard_normal((k, d)) * 2).astype(np.float32),
        selector_t=(rng.standard_normal((d, d)) * 0.3).astype(np.float32),
        selector_bias=rng.standard_normal(d).astype(np.float32),
    )
    distance = rng.uniform(0.5, 5.0, b).astype(np.float32)
    return x, weights, distance


def call(x, w, distance=None, **kw):
    return _core.meta_embedding(x, w["hallucinator_t"], w["hallucinator_bias"], w["centroids"], w["selector_t"],
                                w["selector_bias"], distance, **kw)


def formulas(x, w, distance, reach_scale=10.0):
    """The head's formulas in float64."""
    f = {name: a.astype(np.float64) for name, a in w.items()}
    x = x.astype(np.float64)
    scores = x @ f["hallucinator_t"] + f["hallucinator_bias"]
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    memory = (p / p.sum(axis=1, keepdims=True)) @ f["centroids"]
    selector = np.tanh(x @ f["selector_t"] + f["selector_bias"])
    reach = reach_scale / distance.astype(np.float64)
    return memory, selector, reach, reach[:, None] * (x + selector * memory)


def test_meta_embedding_follows_the_formulas():
    x, w, distance = head_arrays(np.random.default_rng(0))
    memory, selector, infused, meta, reach = call(x, w, distance, reach_scale=7.5)
    want_memory, want_selector, want_reach, want_meta = formulas(x, w, distance, 7.5)
    np.testing.assert_allclose(memory, want_memory, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(selector, want_selector, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reach, want_reach, rtol=1e-6)
    np.testing.assert_allclose(meta, want_meta, rtol=1e-5, atol=1e-5)
    assert np.array_equal(infused, selector * memory)
    assert all(a.dtype == np.float32 and a.shape == x.shape for a in (memory, selector, infused, meta))


def test_without_a_distance_there_is_no_reachability():
    x, w, _ = head_arrays(np.random.default_rng(1))
    memory, selector, infused, meta, reach = call(x, w)
    assert reach is None
    assert np.array_equal(meta, x + infused)


def test_reachability_uses_eps_at_distance_zero():
    x, w, distance = head_arrays(np.random.default_rng(2), b=2)
    distance[0] = 0.0
    reach = call(x, w, distance, eps=1e-6)[4]
    assert reach[0] == np.float32(1.0 / np.float32(1e-6)) * np.float32(10.0)


@pytest.mark.parametrize("squash", ["code", "paper"])
def test_cosine_logits_follow_the_squash(squash):
    rng = np.random.default_rng(3)
    v = rng.standard_normal((5, 30), dtype=np.float32)
    v[2] = 0.0
    w = rng.standard_normal((30, 12)).astype(np.float32)
    norm = np.linalg.norm(v.astype(np.float64), axis=1, keepdims=True)
    factor = 16.0 / (1 + norm) if squash == "code" else 16.0 * norm / (1 + norm ** 2)
    logits = _core.cosine_logits(v, w, 16.0, squash=squash)
    np.testing.assert_allclose(logits, factor * (v.astype(np.float64) @ w), rtol=1e-5, atol=1e-5)
    assert np.array_equal(logits[2], np.zeros(12, np.float32))


def test_a_rows_bits_do_not_depend_on_batch_kernel_or_threads():
    x, w, distance = head_arrays(np.random.default_rng(4), b=20, d=64, k=700)
    unit = np.random.default_rng(5).standard_normal((64, 700)).astype(np.float32)
    saved = _core.get_num_threads()
    try:
        reference = call(x, w, distance, kernel="portable-f32")
        ref_logits = _core.cosine_logits(reference[3], unit, 16.0, kernel="portable-f32")
        for kernel in F32_KERNELS:
            for threads in (1, 2):
                _core.set_num_threads(threads)
                for rows in (slice(0, 20), slice(3, 4), slice(7, 19)):
                    parts = call(x[rows], w, distance[rows], kernel=kernel)
                    for got, want in zip(parts, reference):
                        assert np.array_equal(got, want[rows]), (kernel, threads, rows)
                    logits = _core.cosine_logits(parts[3], unit, 16.0, kernel=kernel)
                    assert np.array_equal(logits, ref_logits[rows]), (kernel, threads, rows)
    finally:
        _core.set_num_threads(saved)


def test_strided_rows_are_read_in_place():
    x, w, distance = head_arrays(np.random.default_rng(6))
    wide = np.zeros((x.shape[0], x.shape[1] + 9), np.float32)
    wide[:, 3:3 + x.shape[1]] = x
    for got, want in zip(call(wide[:, 3:3 + x.shape[1]], w, distance), call(x, w, distance)):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("argument, bad, message", [
    ("x", np.zeros((6, 41), np.float32), "hallucinator_t must have shape (41, 90)"),
    ("x", np.zeros((6, 40), np.float64), "x must be a float32 NumPy array"),
    ("x", np.zeros(40, np.float32), "x must be 2-D"),
    ("hallucinator_bias", np.zeros(89, np.float32), "hallucinator_bias must have 90 elements"),
    ("centroids", np.zeros((90, 39), np.float32), "centroids must have shape (90, 40)"),
    ("selector_t", np.zeros((40, 41), np.float32), "selector_t must have shape (40, 40)"),
    ("selector_bias", np.zeros(41, np.float32), "selector_bias must have 40 elements"),
    ("distance", np.ones(5, np.float32), "nearest_distance must have 6 elements"),
    ("centroids", np.zeros((40, 90), np.float32).T, "centroids must have a unit stride along its last axis"),
])
def test_meta_embedding_names_the_bad_argument(argument, bad, message):
    x, w, distance = head_arrays(np.random.default_rng(7))
    if argument == "x":
        x = bad
    elif argument == "distance":
        distance = bad
    else:
        w = {**w, argument: bad}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(x, w, distance)


@pytest.mark.parametrize("keyword, value", [("reach_scale", 0.0), ("reach_scale", float("nan")), ("eps", -1.0)])
def test_meta_embedding_refuses_non_positive_scalars(keyword, value):
    x, w, distance = head_arrays(np.random.default_rng(8))
    with pytest.raises(ValueError, match=f"{keyword} must be finite and > 0"):
        call(x, w, distance, **{keyword: value})


def test_cosine_logits_names_the_bad_argument():
    v = np.zeros((3, 8), np.float32)
    with pytest.raises(ValueError, match=r"unit_weight_t must have shape \(8, 5\)"):
        _core.cosine_logits(v, np.zeros((7, 5), np.float32), 16.0)
    with pytest.raises(ValueError, match="squash must be 'code' or 'paper'"):
        _core.cosine_logits(v, np.zeros((8, 5), np.float32), 16.0, squash="other")
    with pytest.raises(ValueError, match="logit_scale must be finite"):
        _core.cosine_logits(v, np.zeros((8, 5), np.float32), float("inf"))
    with pytest.raises(ValueError, match="kernel must be one of"):
        _core.cosine_logits(v, np.zeros((8, 5), np.float32), 16.0, kernel="nope")


def test_empty_batches_and_no_classes():
    z = np.zeros
    memory = _core.meta_embedding(z((0, 4), np.float32), z((4, 3), np.float32), z(3, np.float32),
                                  z((3, 4), np.float32), z((4, 4), np.float32), z(4, np.float32))[0]
    assert memory.shape == (0, 4)
    assert _core.cosine_logits(z((0, 4), np.float32), np.ones((4, 3), np.float32), 16.0).shape == (0, 3)
    # K = 0: an empty softmax reads out zeros (as torch's softmax(...) @ C of an empty dimension)
    memory = _core.meta_embedding(np.ones((2, 4), np.float32), z((4, 0), np.float32), z(0, np.float32),
                                  z((0, 4), np.float32), z((4, 4), np.float32), z(4, np.float32))[0]
    assert np.array_equal(memory, z((2, 4), np.float32))


def test_a_nan_feature_poisons_its_row_only():
    x = np.ones((2, 4), np.float32)
    x[0, 1] = np.nan
    ones = np.ones
    meta = _core.meta_embedding(x, ones((4, 3), np.float32), np.zeros(3, np.float32), ones((3, 4), np.float32),
                                ones((4, 4), np.float32), np.zeros(4, np.float32), ones(2, np.float32))[3]
    assert np.isnan(meta[0]).all() and np.isfinite(meta[1]).all()


def _overcommits_always() -> bool:
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip() == "1"
    except OSError:
        return True


@pytest.mark.skipif(_overcommits_always(), reason="the kernel would grant 4 TiB of address space")
def test_results_too_large_to_allocate_raise_memory_error():
    # B x K = 2^40 scores (4 TiB) from 4 MB inputs: MemoryError, not an abort of the process
    rows = classes = 1 << 20
    ones = np.ones
    with pytest.raises(MemoryError, match="cannot allocate 4398046511104 bytes"):
        _core.meta_embedding(ones((rows, 1), np.float32), ones((1, classes), np.float32),
                             np.zeros(classes, np.float32), ones((classes, 1), np.float32),
                             ones((1, 1), np.float32), np.zeros(1, np.float32))
