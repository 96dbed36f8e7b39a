"""The heads' inference path on the Rust core's batch-invariant products (oltr.nn._products):
the meta-embedding and cosine heads against the formulas and the torch path, and a row's bits
across batches, thread counts, threads calling at once and a forked child."""
from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
import torch

import oltr.nn._nearest
from oltr.memory import get_num_threads, set_num_threads
from oltr.nn import CosNormClassifier, MetaEmbeddingClassifier, _products
from oltr.nn._nearest import rust_core_available

# as tests/test_head_inference.py: float32 rounding of logits bounded by 16
CLOSE = {"rtol": 1e-6, "atol": 8e-6}

needs_core = pytest.mark.skipif(not rust_core_available(), reason="the Rust core is not built")


def _head(batch, classes, dim, squash="code", seed=0):
    torch.manual_seed(seed)
    head = MetaEmbeddingClassifier(dim, classes, squash=squash).eval()
    centroids = torch.randn(classes, dim).relu() * 2
    x = centroids[torch.randint(0, classes, (batch,))] + torch.randn(batch, dim)
    return head, x, centroids


def _inference(head, x, centroids):
    with torch.no_grad():
        return head(x, centroids)


EXTRAS = ("memory", "selector", "infused", "meta_embedding", "reachability", "nearest_distance")


def test_the_path_needs_float32_cpu_tensors_and_the_core(monkeypatch):
    a32 = torch.zeros(2, 2)
    assert _products.available(a32, a32) is rust_core_available()
    assert not _products.available(a32, a32.double())
    assert not _products.available(a32.half())
    monkeypatch.setattr(_products, "enabled", False)
    assert not _products.available(a32)


@needs_core
def test_core_wrappers_copy_operands_with_a_strided_last_axis():
    rng = np.random.default_rng(0)
    v, unit_t = (rng.standard_normal(s).astype(np.float32) for s in ((5, 7), (7, 3)))
    expected = _products.cosine_logits(v, unit_t, 16.0, "code")
    norm = np.linalg.norm(v.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(expected, 16.0 / (1 + norm) * (v @ unit_t), rtol=1e-5, atol=1e-5)
    strided_w = np.asfortranarray(unit_t)  # last axis strided: copied, same bits
    assert np.array_equal(_products.cosine_logits(v, strided_w, 16.0, "code"), expected)
    wide = np.zeros((5, 20), np.float32)
    wide[:, ::2][:, :7] = v
    assert np.array_equal(_products.cosine_logits(wide[:, ::2][:, :7], unit_t, 16.0, "code"), expected)


# -- the heads computed on the core -------------------------------------------------------------
@needs_core
@pytest.mark.parametrize("batch,classes,dim,squash", [
    (1, 300, 32, "code"), (7, 300, 32, "paper"), (300, 700, 48, "code"), (64, 1000, 16, "paper"),
    (5, 3, 64, "code"), (2, 1, 8, "paper")])
def test_core_head_equals_the_formulas_and_the_torch_path(monkeypatch, batch, classes, dim, squash):
    head, x, centroids = _head(batch, classes, dim, squash)
    logits, extras = _inference(head, x, centroids)
    with torch.enable_grad():
        ref_logits, ref = head(x, centroids)
    torch.testing.assert_close(logits, ref_logits.detach(), **CLOSE)
    for name in EXTRAS:
        torch.testing.assert_close(getattr(extras, name), getattr(ref, name).detach(), **CLOSE, msg=name)
    assert torch.equal(extras.nearest, ref.nearest)
    assert head.cache_builds["weights_t"] == 3  # the core path ran (the torch path builds none here)
    monkeypatch.setattr(_products, "enabled", False)
    torch_logits, _ = _inference(head, x, centroids)
    torch.testing.assert_close(logits, torch_logits, **CLOSE)


@needs_core
def test_forward_features_gives_the_extras_of_forward_bit_for_bit():
    head, x, centroids = _head(9, 400, 32)
    _, extras = _inference(head, x, centroids)
    with torch.no_grad():
        features = head.forward_features(x, centroids)
    for name in EXTRAS:
        assert torch.equal(getattr(features, name), getattr(extras, name)), name


@needs_core
@pytest.mark.parametrize("classes,dim", [(700, 48), (2100, 512)])
def test_a_rows_bits_do_not_depend_on_its_batch(classes, dim):
    """Any batch size (one row included), any position, any other rows: the same bits."""
    head, x, centroids = _head(300, classes, dim)
    logits, extras = _inference(head, x, centroids)
    for start, stop in ((0, 1), (0, 2), (0, 3), (5, 6), (17, 81), (250, 300)):
        part, part_extras = _inference(head, x[start:stop], centroids)
        assert torch.equal(part, logits[start:stop]), (start, stop)
        for name in EXTRAS:
            assert torch.equal(getattr(part_extras, name), getattr(extras, name)[start:stop]), (name, start, stop)
    other = x.clone()
    other[1:] = torch.randn(299, dim) * 5  # every other row changes: row 0 keeps its bits
    logits2, extras2 = _inference(head, other, centroids)
    assert torch.equal(logits2[0], logits[0]) and torch.equal(extras2.memory[0], extras.memory[0])


@needs_core
def test_core_head_results_do_not_depend_on_the_thread_count():
    head, x, centroids = _head(200, 900, 32)
    saved = get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            set_num_threads(threads)
            logits, extras = _inference(head, x, centroids)
            results.append((logits, extras.memory, extras.meta_embedding))
    finally:
        set_num_threads(saved)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@needs_core
def test_core_head_takes_strided_inputs():
    head, x, centroids = _head(40, 300, 32)
    wide_x = torch.zeros(40, 80)
    wide_x[:, 5:37] = x
    strided_centroids = torch.zeros(32, 300)
    strided_centroids.copy_(centroids.t())
    logits, extras = _inference(head, wide_x[:, 5:37], strided_centroids.t())
    expected, expected_extras = _inference(head, x, centroids)
    assert torch.equal(logits, expected) and torch.equal(extras.memory, expected_extras.memory)


def test_the_torch_path_runs_without_the_core(monkeypatch):
    head, x, centroids = _head(9, 300, 32)
    monkeypatch.setattr(oltr.nn._nearest, "_rust_available", False)
    assert not _products.available(x)
    logits, extras = _inference(head, x, centroids)
    with torch.enable_grad():
        ref_logits, ref = head(x, centroids)
    torch.testing.assert_close(logits, ref_logits.detach(), **CLOSE)
    torch.testing.assert_close(extras.memory, ref.memory.detach(), **CLOSE)
    assert head.cache_builds["centroids_t"] == 1  # the torch path's read-out ran


@needs_core
@pytest.mark.parametrize("batch", [1, 5, 300])
@pytest.mark.parametrize("squash", ["code", "paper"])
def test_cosine_layer_on_the_core_equals_the_formula(batch, squash):
    torch.manual_seed(1)
    layer = CosNormClassifier(24, 500, squash=squash).eval()
    x = torch.randn(batch, 24) * 3
    x[0] = 0.0  # a zero row gives zero logits
    with torch.no_grad():
        logits = layer(x)
    with torch.enable_grad():
        expected = layer(x).detach()
    torch.testing.assert_close(logits, expected, **CLOSE)
    assert torch.equal(logits[0], torch.zeros(500))
    with torch.no_grad():
        assert torch.equal(layer(x[-1:]), logits[-1:])  # a row alone: the same bits


def _child_logits(queue, head, x, centroids):
    queue.put(_inference(head, x, centroids)[0].numpy())


@needs_core
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="no fork on this platform")
def test_a_forked_child_computes_the_same_logits():
    head, x, centroids = _head(64, 800, 32)
    expected, _ = _inference(head, x, centroids)  # the parent's core threads ran
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_logits, args=(queue, head, x, centroids))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and np.array_equal(got, expected.numpy())


def test_heads_called_from_several_threads_at_once_give_their_sequential_results():
    """A predictor serving requests from several threads: concurrent head calls each get
    exactly the result they get alone."""
    head, _, centroids = _head(1, 300, 64)
    inputs = [torch.randn(batch, 64) for batch in (1, 5, 40, 3, 17, 64)]
    alone = [_inference(head, x, centroids)[0] for x in inputs]
    results: dict[int, list] = {}
    start = threading.Barrier(len(inputs))

    def call(i: int) -> None:
        start.wait()
        results[i] = [_inference(head, inputs[i], centroids)[0] for _ in range(5)]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(len(inputs)))
    for i, runs in results.items():
        assert all(torch.equal(run, alone[i]) for run in runs), i


@pytest.mark.parametrize("core", [True, False])
def test_meta_directions_are_the_unit_meta_embeddings_without_a_search(monkeypatch, core):
    head, x, centroids = _head(12, 400, 32)
    monkeypatch.setattr(_products, "enabled", core)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(head.forward_features(x, centroids).meta_embedding, dim=1)
    if core:  # the core path needs no nearest centroid: the reachability only scales each row
        monkeypatch.setattr(head, "nearest", lambda *args: pytest.fail("searched"))
    directions = head.meta_directions(x, centroids)
    assert directions.dtype == torch.float32 and directions.shape == (12, 32)
    torch.testing.assert_close(directions, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="x must have shape"):
        head.meta_directions(x[:, :5], centroids)
    with pytest.raises(ValueError, match="centroids must have shape"):
        head.meta_directions(x, centroids[:7])


@needs_core
def test_core_head_takes_expanded_inputs():
    """``expand`` gives rows that overlap (row stride 0): copied before the core's products."""
    head, x, centroids = _head(6, 50, 16)
    row, one = x[:1].expand(6, 16), centroids[:1].expand(50, 16)
    logits, extras = _inference(head, row, one)
    expected, expected_extras = _inference(head, row.contiguous(), one.contiguous())
    assert torch.equal(logits, expected) and torch.equal(extras.memory, expected_extras.memory)
    assert torch.equal(head.meta_directions(row, one), head.meta_directions(row.contiguous(), one.contiguous()))
