"""The heads' inference products on numpy's BLAS (oltr.nn._products): tiles, the work-stealing
threads, the OpenBLAS thread count, and the meta-embedding and cosine heads computed that way
against the formulas, the torch path, other thread counts and other batches."""
from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest
import torch

from oltr.nn import CosNormClassifier, MetaEmbeddingClassifier, _products
from oltr.nn._nearest import rust_core_available

# as tests/test_head_inference.py: float32 rounding of logits bounded by 16
CLOSE = {"rtol": 1e-6, "atol": 8e-6}

needs_openblas = pytest.mark.skipif(_products._blas_threads().set is None,
                                    reason="numpy's BLAS is not an OpenBLAS this module can drive")


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of a few thousand multiply-adds, so small heads take the numpy path, cut into
    many tiles."""
    monkeypatch.setattr(_products, "TILE_WORK", 2048)
    monkeypatch.setattr(_products, "RANGE_WORK", 2048)
    monkeypatch.setattr(_products, "MIN_HEAD_WIDTH", 2048)
    monkeypatch.setattr(_products, "MIN_ROWS", 16)


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def _head(batch, classes, dim, squash="code", seed=0):
    torch.manual_seed(seed)
    head = MetaEmbeddingClassifier(dim, classes, squash=squash).eval()
    centroids = torch.randn(classes, dim).relu() * 2
    x = centroids[torch.randint(0, classes, (batch,))] + torch.randn(batch, dim)
    return head, x, centroids


def _inference(head, x, centroids):
    with torch.no_grad():
        return head(x, centroids)


# -- tiles and the threads that run them ------------------------------------------------------
@pytest.mark.parametrize("rows,columns,inner", [
    (1, 1000, 512), (64, 1000, 512), (1024, 1000, 512), (1024, 100_000, 512), (2, 100_000, 512),
    (1, 512, 100_000), (1024, 512, 10_000), (300, 512, 512), (97, 1000, 512), (0, 50, 8), (3, 7, 1)])
def test_tiles_cover_the_output_once(rows, columns, inner):
    tiles = _products.tiles(rows, columns, inner)
    covered = np.zeros((rows, columns), np.int64)
    for r0, r1, c0, c1 in tiles:
        covered[r0:r1, c0:c1] += 1
        assert r0 % _products.ALIGN == 0 and c0 % _products.ALIGN == 0
        assert (c1 - c0) * inner >= _products.RANGE_WORK or c1 - c0 == columns
        assert r1 - r0 >= min(_products.MIN_ROWS // 2, _products.ALIGN) or r1 - r0 == rows
    assert (covered == 1).all()
    assert 1 <= len(tiles) <= _products.MAX_TILES
    assert tiles == _products.tiles(rows, columns, inner)  # a function of the shape


def test_column_ranges_depend_on_the_columns_only():
    """An entry's product is computed over the same columns whatever the batch."""
    for columns, inner in ((1000, 512), (10_000, 512), (100_000, 512), (512, 512)):
        ranges = {(c0, c1) for _, _, c0, c1 in _products.tiles(1024, columns, inner)}
        for rows in (1, 2, 3, 64, 300):
            assert {(c0, c1) for _, _, c0, c1 in _products.tiles(rows, columns, inner)} == ranges
    assert len({t[2:] for t in _products.tiles(64, 1000, 512)}) == 1  # 1000 x 512 is one range
    assert len({t[2:] for t in _products.tiles(64, 10_000, 512)}) == 10
    assert {t[:2] for t in _products.tiles(64, 10_000, 512)} == {(0, 64)}  # enough column ranges
    assert {t[:2] for t in _products.tiles(64, 1000, 512)} == {(0, 32), (32, 64)}
    assert {t[:2] for t in _products.tiles(1024, 1000, 512)} == {(0, 256), (256, 512), (512, 768), (768, 1024)}
    assert _products._split(97, 3) == [(0, 48), (48, 97)]  # no 1-row sliver (a GEMV: other rounding)


def test_run_shares_the_tasks_with_a_helper_and_runs_each_once(two_threads):
    seen = []

    def task(log, tile):
        time.sleep(0.005)  # long enough for the helper to take some
        log.append((tile, threading.current_thread().name))

    tiles = [(i, i + 1, 0, 1) for i in range(12)]
    _products.run([(task, (seen,), tiles[:5]), (task, (seen,), tiles[5:])], work=1 << 30)
    assert sorted(t for t, _ in seen) == tiles
    assert len({name for _, name in seen}) == 2
    seen.clear()
    _products.run([(task, (seen,), tiles)], work=_products.TILE_WORK)  # too little work to share
    assert {name for _, name in seen} == {threading.current_thread().name}


def test_run_raises_the_first_task_error_and_stays_usable(two_threads):
    def task(tile):
        time.sleep(0.002)
        if tile[0] == 3:
            raise ValueError("tile 3 failed")

    tiles = [(i, i + 1, 0, 1) for i in range(8)]
    with pytest.raises(ValueError, match="tile 3 failed"):
        _products.run([(task, (), tiles)], work=1 << 30)
    done = []
    _products.run([(lambda tile: done.append(tile), (), tiles)], work=1 << 30)
    assert sorted(done) == tiles


@needs_openblas
def test_single_threaded_blas_nests_and_restores_the_thread_count():
    blas = _products._blas_threads()
    before = blas.get()
    inside = []
    with _products.single_threaded_blas():
        with _products.single_threaded_blas():
            inside.append(blas.get())
        inside.append(blas.get())
        worker = threading.Thread(target=lambda: inside.append(blas.get()))
        worker.start()
        worker.join()
    assert inside == [1, 1, 1] and blas.get() == before


def test_available_takes_wide_cpu_float32_and_float64_heads_of_one_dtype(monkeypatch):
    a32, a64, wide = torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.float64), _products.MIN_HEAD_WIDTH
    expected = _products._blas_threads().set is not None
    assert _products.available(wide, 2, a32, a32) is expected and _products.available(wide, 9, a64) is expected
    assert not _products.available(wide - 1, 2, a32)  # narrow heads: torch (batch-stable there)
    assert _products.available(wide - 1, 1, a32) is expected  # but a single row has its own path
    assert not _products.available(wide, 2, a32, a64)
    assert not _products.available(wide, 2, a32.half())
    monkeypatch.setattr(_products, "enabled", False)
    assert not _products.available(wide, 2, a32)


# -- the heads computed on numpy ---------------------------------------------------------------
@needs_openblas
@pytest.mark.parametrize("batch,classes,dim,squash", [
    (1, 300, 32, "code"), (7, 300, 32, "paper"), (300, 700, 48, "code"), (64, 1000, 16, "paper"),
    (5, 300, 64, "code")])  # the last: column ranges of unequal width (the last one took in a sliver)
def test_numpy_head_equals_the_formulas_and_the_torch_path(small_tiles, two_threads, monkeypatch,
                                                           batch, classes, dim, squash):
    head, x, centroids = _head(batch, classes, dim, squash)
    assert len(_products.tiles(batch, classes, dim)) > 1
    logits, extras = _inference(head, x, centroids)
    with torch.enable_grad():
        ref_logits, ref = head(x, centroids)
    torch.testing.assert_close(logits, ref_logits.detach(), **CLOSE)
    for name in ("memory", "selector", "infused", "meta_embedding", "reachability", "nearest_distance"):
        torch.testing.assert_close(getattr(extras, name), getattr(ref, name).detach(), **CLOSE, msg=name)
    assert torch.equal(extras.nearest, ref.nearest)
    monkeypatch.setattr(_products, "enabled", False)
    torch_logits, _ = _inference(head, x, centroids)
    torch.testing.assert_close(logits, torch_logits, **CLOSE)


@needs_openblas
def test_numpy_head_results_do_not_depend_on_the_thread_count(small_tiles):
    head, x, centroids = _head(200, 900, 32)
    saved = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            logits, extras = _inference(head, x, centroids)
            results.append((logits, extras.memory, extras.meta_embedding))
    finally:
        torch.set_num_threads(saved)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@needs_openblas
def test_a_rows_result_does_not_depend_on_the_other_rows(small_tiles, two_threads):
    head, x, centroids = _head(300, 700, 48)
    logits, extras = _inference(head, x, centroids)
    other = x.clone()
    other[1:] = torch.randn(299, 48) * 5  # every other row changes: row 0 gives the same bits
    logits2, extras2 = _inference(head, other, centroids)
    assert torch.equal(logits2[0], logits[0]) and torch.equal(extras2.memory[0], extras.memory[0])
    for i in (0, 150, 299):  # alone (another batch size, so other tiles): float32 rounding
        alone, _ = _inference(head, x[i:i + 1], centroids)
        torch.testing.assert_close(alone[0], logits[i], **CLOSE)


@needs_openblas
def test_a_rows_bits_do_not_depend_on_the_batch_size():
    """A head wide enough for the numpy path (K x D >= MIN_HEAD_WIDTH) gives each row the same
    bits in batches of 3 rows and more (one or two rows take other kernels: float32 rounding)."""
    assert 2100 * 512 >= _products.MIN_HEAD_WIDTH
    head, x, centroids = _head(300, 2100, 512)
    logits, extras = _inference(head, x, centroids)
    for batch in (3, 7, 64):
        part, part_extras = _inference(head, x[:batch], centroids)
        assert torch.equal(part, logits[:batch]) and torch.equal(part_extras.memory, extras.memory[:batch])
    alone, _ = _inference(head, x[:1], centroids)
    torch.testing.assert_close(alone, logits[:1], **CLOSE)


@needs_openblas
def test_narrow_heads_take_the_torch_path(monkeypatch):
    head, x, centroids = _head(5, 30, 16)
    monkeypatch.setattr(_products, "run_phases", None)  # the numpy path would fail
    logits, _ = _inference(head, x, centroids)
    assert logits.shape == (5, 30)


@needs_openblas
def test_numpy_head_takes_strided_inputs(small_tiles):
    head, x, centroids = _head(40, 300, 32)
    wide_x = torch.zeros(40, 80)
    wide_x[:, 5:37] = x
    strided_centroids = torch.zeros(32, 300)
    strided_centroids.copy_(centroids.t())
    logits, extras = _inference(head, wide_x[:, 5:37], strided_centroids.t())
    expected, expected_extras = _inference(head, x, centroids)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(extras.memory, expected_extras.memory, rtol=0, atol=0)


def test_the_torch_path_runs_where_openblas_is_not_found(monkeypatch):
    head, x, centroids = _head(9, 300, 32)
    blas = _products._BlasThreads.__new__(_products._BlasThreads)
    blas.get, blas.set = None, None
    monkeypatch.setattr(_products, "_blas", blas)
    assert not _products.available(_products.RANGE_WORK, 9, x)
    logits, extras = _inference(head, x, centroids)
    with torch.enable_grad():
        ref_logits, ref = head(x, centroids)
    torch.testing.assert_close(logits, ref_logits.detach(), **CLOSE)
    torch.testing.assert_close(extras.memory, ref.memory.detach(), **CLOSE)


@needs_openblas
@pytest.mark.parametrize("batch", [1, 5, 300])
@pytest.mark.parametrize("squash", ["code", "paper"])
def test_cosine_layer_on_numpy_equals_the_formula(small_tiles, two_threads, batch, squash):
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


def _child_logits(queue, head, x, centroids):
    queue.put(_inference(head, x, centroids)[0].numpy())


@needs_openblas
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods() or not rust_core_available(),
                    reason="no fork, or no Rust core (torch's OpenMP does not survive a fork)")
def test_a_forked_child_starts_its_own_helpers(small_tiles, two_threads):
    head, x, centroids = _head(64, 800, 32)
    expected, _ = _inference(head, x, centroids)  # the parent's helpers run
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_logits, args=(queue, head, x, centroids))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and np.array_equal(got, expected.numpy())


def test_heads_called_from_several_threads_at_once_give_their_sequential_results(small_tiles, two_threads):
    """A predictor serving requests from several threads: concurrent head calls share the
    helper threads and the OpenBLAS thread setting, and each gets exactly the result it gets
    alone."""
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
    assert _products._blas_threads().get() == _products._blas_threads().get()  # still readable
