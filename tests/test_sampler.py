"""ClassAwareSampler and ShardedSampler: official structure, determinism, DDP sharding."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from oltr.data import ClassAwareSampler, ShardedSampler


@pytest.fixture
def labels():
    counts = [30, 12, 5, 2, 1]
    lab = np.repeat(np.arange(5), counts)
    return lab[np.random.default_rng(0).permutation(lab.size)]


def test_length_is_official(labels):
    s = ClassAwareSampler(labels, samples_per_class=4)
    assert len(s) == 30 * 5 == len(list(s))
    assert len(ClassAwareSampler(labels, num_samples=17)) == 17


def test_deterministic_per_seed_and_epoch(labels):
    a = list(ClassAwareSampler(labels, seed=3))
    assert a == list(ClassAwareSampler(labels, seed=3))
    assert a != list(ClassAwareSampler(labels, seed=4))
    s = ClassAwareSampler(labels, seed=3)
    s.set_epoch(1)
    b = list(s)
    assert b != a
    s.set_epoch(0)
    assert list(s) == a


def test_official_structure(labels):
    k = 4
    s = ClassAwareSampler(labels, samples_per_class=k, seed=1, num_samples=5 * k * 12)
    stream = np.asarray(list(s))
    visits = labels[stream].reshape(-1, k)
    # each visit: k consecutive items of one class
    assert np.all(visits == visits[:, :1])
    visit_class = visits[:, 0]
    # classes are visited in reshuffled cycles: every block of 5 visits is a permutation
    for cycle in visit_class.reshape(-1, 5):
        assert sorted(cycle.tolist()) == [0, 1, 2, 3, 4]
    assert len({tuple(c) for c in visit_class.reshape(-1, 5).tolist()}) > 1
    # each class's items come from cycles over its own images (each a permutation)
    for c in range(5):
        pool = np.flatnonzero(labels == c)
        items = stream[np.repeat(visit_class == c, k)]
        full = items[: (items.size // pool.size) * pool.size].reshape(-1, pool.size)
        for cycle in full:
            assert sorted(cycle.tolist()) == sorted(pool.tolist())
    # the single-image class repeats inside its visit
    one = np.flatnonzero(labels == 4)[0]
    assert np.all(stream[np.repeat(visit_class == 4, k)] == one)


def test_class_balance(labels):
    s = ClassAwareSampler(labels, samples_per_class=4, seed=0, num_samples=4000)
    per_class = np.bincount(labels[np.asarray(list(s))], minlength=5)
    assert per_class.max() - per_class.min() <= 4


def test_ddp_shards_partition_the_global_stream(labels):
    w = 3
    single = list(ClassAwareSampler(labels, seed=7, num_samples=100, num_replicas=1, rank=0))
    shards = [ClassAwareSampler(labels, seed=7, num_samples=100, num_replicas=w, rank=r) for r in range(w)]
    assert {len(s) for s in shards} == {34}
    streams = [list(s) for s in shards]
    merged = [None] * (34 * w)
    for r, st in enumerate(streams):
        merged[r::w] = st
    # positions do not overlap and the merged stream extends the single-process one
    assert merged[:100] == single
    # the union of the ranks' s-th batches is the single process's s-th global batch
    b = 4
    for step in range(3):
        union = sorted(x for st in streams for x in st[step * b:(step + 1) * b])
        assert union == sorted(merged[step * b * w:(step + 1) * b * w])


def test_sharded_sampler(labels):
    n = 10
    perm = list(ShardedSampler(n, seed=1))
    assert sorted(perm) == list(range(n)) and perm != list(range(n))
    assert list(ShardedSampler(n, shuffle=False)) == list(range(n))
    padded = [list(ShardedSampler(n, seed=1, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(p) for p in padded] == [4, 4, 4]
    assert set().union(*map(set, padded)) == set(range(n))
    exact = [list(ShardedSampler(n, shuffle=False, num_replicas=3, rank=r, pad=False)) for r in range(3)]
    assert exact == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    s = ShardedSampler(TensorDataset(torch.zeros(n)), seed=1)
    s.set_epoch(2)
    assert list(s) != perm and sorted(s) == list(range(n))


def test_defaults_follow_torch_distributed(monkeypatch, labels):
    import torch.distributed as dist

    assert ClassAwareSampler(labels).num_replicas == 1
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    monkeypatch.setattr(dist, "get_rank", lambda: 2)
    s = ClassAwareSampler(labels)
    assert (s.num_replicas, s.rank) == (4, 2)
    t = ShardedSampler(9)
    assert (t.num_replicas, t.rank, len(t)) == (4, 2, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(num_replicas=2, rank=2), "rank"), (dict(num_replicas=0, rank=0), "num_replicas"),
     (dict(samples_per_class=0), "samples_per_class"), (dict(num_samples=0), "num_samples")],
)
def test_bad_arguments(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassAwareSampler(labels, **kwargs)


def test_bad_labels():
    with pytest.raises(ValueError, match="non-negative"):
        ClassAwareSampler([0, 1, -1])
    with pytest.raises(ValueError, match="non-empty"):
        ClassAwareSampler([])


def test_works_with_dataloader(labels):
    ds = TensorDataset(torch.from_numpy(labels))
    loader = DataLoader(ds, batch_size=8, sampler=ClassAwareSampler(labels, num_samples=32, seed=0))
    batches = [b[0] for b in loader]
    assert len(batches) == 4 and all(len(b) == 8 for b in batches)
    # each batch holds 2 classes × 4
    assert all(len(torch.unique(b)) <= 2 for b in batches)


def test_merge_shards_restores_input_order():
    from oltr.data import merge_shards

    n, w = 11, 3
    shards = [np.asarray(list(ShardedSampler(n, shuffle=False, num_replicas=w, rank=r, pad=False))) * 10
              for r in range(w)]
    assert merge_shards(shards).tolist() == [10 * i for i in range(n)]
    feats = [torch.from_numpy(np.stack([s, s], axis=1)).float() for s in shards]
    merged = merge_shards(feats)
    assert isinstance(merged, torch.Tensor) and merged[:, 0].tolist() == [10.0 * i for i in range(n)]
    with pytest.raises(ValueError, match="strided split"):
        merge_shards([np.zeros(2), np.zeros(4)])
    with pytest.raises(ValueError, match="empty"):
        merge_shards([])
