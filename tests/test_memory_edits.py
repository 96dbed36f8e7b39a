"""CentroidIndex.add / remove / update: after any sequence of edits, every backend answers as an
index built from scratch on the final centroids (in id order, rows mapped to ids)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oltr.memory import CentroidIndex, FaissOptions, _edits
from test_memory_support import EXACT_BACKENDS, require_backend


@pytest.fixture(params=EXACT_BACKENDS)
def backend(request) -> str:
    require_backend(request.param)
    return request.param


def _rebuilt(live: dict[int, np.ndarray], backend: str):
    """The reference: an index built from scratch on the live centroids in id order, and the
    ids of its rows."""
    ids = np.array(sorted(live), dtype=np.int64)
    return CentroidIndex(np.stack([live[i] for i in ids]), backend=backend), ids


def _random_rows(rng, n, dim, grid):
    if grid:  # small integers: exact ties between distinct centroids are common
        return rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    return rng.standard_normal((n, dim)).astype(np.float32)


def _check(index, live, backend, x, k_values):
    assert index.num_classes == len(live)
    fresh, ids = _rebuilt(live, backend)
    for k in k_values:
        dist, idx = fresh.search(x, k)
        got_dist, got_idx = index.search(x, k)
        np.testing.assert_array_equal(got_idx, ids[idx])
        np.testing.assert_array_equal(got_dist, dist)
    np.testing.assert_array_equal(index.ids, ids)
    np.testing.assert_array_equal(index.reachability(x, scale=10.0), fresh.reachability(x, scale=10.0))


@pytest.mark.parametrize("grid", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("seed", range(3))
def test_random_edit_sequences_equal_a_rebuilt_index(backend, grid, seed):
    rng = np.random.default_rng(seed)
    dim = int(rng.choice([1, 3, 16]))
    start = _random_rows(rng, int(rng.integers(1, 30)), dim, grid)
    index = CentroidIndex(start, backend=backend)
    live = {i: row for i, row in enumerate(start)}
    issued = set(live)
    x = _random_rows(rng, 23, dim, grid)
    x[:5] = start[rng.integers(0, start.shape[0], 5)]  # queries on a centroid: distance 0 ties
    for _ in range(40):
        op = rng.choice(["add", "remove", "update"]) if len(live) > 1 else "add"
        if op == "add":
            rows = _random_rows(rng, int(rng.integers(1, 4)), dim, grid)
            if grid is False and rng.random() < 0.3:
                rows[0] = live[int(rng.choice(list(live)))]  # a duplicate of a live centroid
            new = index.add(rows)
            assert new.dtype == np.int64 and new[0] == max(issued) + 1
            assert not set(new.tolist()) & issued  # a removed id is never issued again
            live.update(zip(new.tolist(), rows))
            issued.update(new.tolist())
        else:
            count = int(rng.integers(1, min(3, len(live) - (op == "remove")) + 1))
            chosen = rng.choice(sorted(live), size=count, replace=False)
            if op == "remove":
                index.remove(chosen)
                for i in chosen.tolist():
                    del live[i]
            else:
                rows = _random_rows(rng, count, dim, grid)
                index.update(chosen, rows)
                live.update(zip(chosen.tolist(), rows))
        k_all = len(live)
        _check(index, live, backend, x, sorted({1, min(3, k_all), k_all}))
    assert index._edits.compactions >= 1  # the sequence crossed a compaction


def test_add_stores_rows_and_leaves_the_built_part(backend, monkeypatch):
    """An add never rebuilds the built part (no repack): only the delta's backend is built,
    on the next search, over the added rows."""
    rng = np.random.default_rng(0)
    index = CentroidIndex(rng.standard_normal((200, 8)).astype(np.float32), backend=backend)
    built = []
    original = index._build_part

    def spy(centroids, main):
        built.append((int(centroids.shape[0]), main))
        return original(centroids, main)

    monkeypatch.setattr(index, "_build_part", spy)
    main_impl = index._impl
    for step in range(5):
        index.add(rng.standard_normal((1, 8)).astype(np.float32))
        assert built == [(n + 1, False) for n in range(step)]  # nothing built until a search
        index.search(rng.standard_normal((2, 8)).astype(np.float32), 1)
        assert built[-1] == (step + 1, False)
    assert index._edits._main_impl is main_impl and index._edits.compactions == 0


def test_compaction_threshold_and_explicit_compact(backend):
    rng = np.random.default_rng(1)
    k0 = 320
    index = CentroidIndex(rng.standard_normal((k0, 4)).astype(np.float32), backend=backend)
    expected = next(n for n in range(1, k0) if n > max(_edits.COMPACT_MIN, _edits.COMPACT_FRACTION * (k0 + n)))
    added = 0
    while index._edits is None or index._edits.compactions == 0:
        index.add(rng.standard_normal((1, 4)).astype(np.float32))
        added += 1
    assert added == expected == 22
    index.remove([0, 5])
    before = index.search(rng.standard_normal((3, 4)).astype(np.float32), 4)
    index.compact()
    assert index._edits.compactions == 2 and index._edits._num_dead == 0 and not index._edits._delta
    assert index._impl is index._edits.main_impl  # the replaced built part is not kept
    after = index.search(rng.standard_normal((3, 4)).astype(np.float32), 4)
    assert before[1].shape == after[1].shape
    assert 0 not in index.ids and 5 not in index.ids and index.num_classes == k0 + added - 2


def test_ids_after_remove_are_stable_and_never_reused(backend):
    c = np.eye(4, dtype=np.float32)
    index = CentroidIndex(c, backend=backend)
    np.testing.assert_array_equal(index.ids, [0, 1, 2, 3])
    index.remove(3)  # the highest id: still never reissued
    assert index.add(np.full((1, 4), 5, np.float32)).tolist() == [4]
    index.update([1], 2 * np.eye(4, dtype=np.float32)[1:2])
    np.testing.assert_array_equal(index.ids, [0, 1, 2, 4])
    dist, idx = index.search(np.eye(4, dtype=np.float32)[[1, 3]], 1)
    assert idx[0, 0] == 1 and dist[0, 0] == pytest.approx(1.0)  # the updated centroid, same id
    index.compact()
    np.testing.assert_array_equal(index.ids, [0, 1, 2, 4])
    assert index.search(np.full((1, 4), 5, np.float32), 1)[1][0, 0] == 4


def test_torch_queries_get_torch_results_and_gradients():
    c = torch.randn(6, 3, requires_grad=True)
    index = CentroidIndex(c, backend="torch")
    index.remove([2])
    new = torch.randn(2, 3, requires_grad=True)
    index.add(new)
    x = torch.randn(5, 3, requires_grad=True)
    dist, idx = index.search(x, 3)
    assert isinstance(idx, torch.Tensor) and idx.dtype == torch.int64
    dist.sum().backward()
    assert x.grad is not None and c.grad is not None and new.grad is not None
    live = torch.cat([c.detach()[[0, 1, 3, 4, 5]], new.detach()])
    ref = torch.cdist(x.detach(), live).sort(dim=1)
    torch.testing.assert_close(dist.detach(), ref.values[:, :3])


@pytest.mark.parametrize("options", [FaissOptions(index="hnsw"), FaissOptions(index="ivf", nlist=2, nprobe=2)],
                         ids=["hnsw", "ivf"])
def test_faiss_options_after_edits(options):
    """Approximate FAISS indexes: edits keep the options; with search wide enough to be exact
    (small K, every list probed) the answers still equal a rebuilt exact index."""
    rng = np.random.default_rng(2)
    c = rng.standard_normal((100, 8)).astype(np.float32)
    index = CentroidIndex(c, faiss_options=options)
    live = {i: row for i, row in enumerate(c)}
    x = rng.standard_normal((10, 8)).astype(np.float32)
    for _ in range(12):
        rows = rng.standard_normal((2, 8)).astype(np.float32)
        live.update(zip(index.add(rows).tolist(), rows))
        gone = int(rng.choice(sorted(live)))
        index.remove(gone)
        del live[gone]
    assert index._edits.compactions >= 1
    assert index._edits._main_impl.options == options
    dist, idx = index.search(x, 5)
    fresh, ids = _rebuilt(live, "torch")
    ref_idx = ids[fresh.search(x, 5)[1]]
    assert not set(idx.ravel().tolist()) - set(live)
    # distances are exact for the returned ids; recall of the nearest is that of the index
    exact = np.array([[np.linalg.norm(x[r] - live[int(i)]) for i in row] for r, row in enumerate(idx)])
    np.testing.assert_allclose(dist, exact, rtol=1e-5)
    assert (idx[:, 0] == ref_idx[:, 0]).mean() >= 0.9


# ---------------------------------------------------------------------------- bad input
def test_bad_edits_raise_naming_the_argument(backend):
    index = CentroidIndex(np.eye(3, dtype=np.float32), backend=backend)
    with pytest.raises(ValueError, match="centroids has dimension D=2, but the index has D=3"):
        index.add(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="centroids contains NaN or Inf"):
        index.add(np.array([[0, np.nan, 0]], np.float32))
    with pytest.raises(TypeError, match="centroids must be real"):
        index.add(np.zeros((1, 3), np.complex64))
    with pytest.raises(TypeError, match="centroids must be float32 or float64"):
        index.add(np.zeros((1, 3), np.int32))
    with pytest.raises(ValueError, match="centroids is empty"):
        index.add(np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match=r"ids contains unknown or removed id\(s\) \[7\]"):
        index.remove([0, 7])
    with pytest.raises(ValueError, match="ids contains duplicates"):
        index.update([1, 1], np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="ids has 1 id"):
        index.update([1], np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="ids must be integers"):
        index.remove([0.0])
    with pytest.raises(TypeError, match="ids must be integers"):
        index.remove(True)
    with pytest.raises(ValueError, match="ids is empty"):
        index.remove([])
    with pytest.raises(ValueError, match="every centroid"):
        index.remove([0, 1, 2])
    with pytest.raises(ValueError, match="centroids has dimension"):
        index.update([0], np.zeros((1, 4), np.float32))
    # nothing changed by the refused edits
    assert index.num_classes == 3
    np.testing.assert_array_equal(index.ids, [0, 1, 2])
    index.remove([1])
    with pytest.raises(ValueError, match=r"unknown or removed id\(s\) \[1\]"):
        index.update([1], np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="k must satisfy 1 <= k <= K = 2"):
        index.search(np.zeros((1, 3), np.float32), 3)


def test_rust_kernel_choice_is_kept_by_every_part():
    require_backend("rust")
    from oltr.memory import available_kernels

    rng = np.random.default_rng(5)
    for kernel in available_kernels():
        c = rng.standard_normal((40, 16)).astype(np.float32)
        index = CentroidIndex(c, kernel=kernel)
        rows = rng.standard_normal((3, 16)).astype(np.float32)
        index.add(rows)
        index.remove([3])
        x = rng.standard_normal((7, 16)).astype(np.float32)
        dist, idx = index.search(x, 4)
        assert index._edits._delta_backend().kernel == kernel
        live = np.delete(np.concatenate([c, rows]), 3, axis=0)
        ids = np.delete(np.arange(43), 3)
        ref_dist, ref_idx = CentroidIndex(live, kernel=kernel).search(x, 4)
        np.testing.assert_array_equal(idx, ids[ref_idx])
        np.testing.assert_array_equal(dist, ref_dist)
        index.compact()
        assert index.kernel == kernel and index._edits._main_impl.kernel == kernel
