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


# -- the official sampler's iteration, written out as data/ClassAwareSampler.py has it -----------
# Only the source of the shuffles differs: the official RandomCycleIter calls random.shuffle at
# the start of every cycle; here each cycle's order is the next permutation of the seeded
# source that ClassAwareSampler documents (cycle j of an iterator = its items ordered by argsort
# of the j-th block of uniform doubles of PCG64(child seed)). Everything else is the official code.


class _Permutations:
    def __init__(self, seq):
        self.rng = np.random.Generator(np.random.PCG64(seq))

    def shuffle(self, original, data_list):
        data_list[:] = [original[i] for i in np.argsort(self.rng.random(len(original)), kind="stable")]


class RandomCycleIter:
    def __init__(self, data, permutations):
        self.original = list(data)
        self.data_list = list(data)
        self.length = len(self.data_list)
        self.i = self.length - 1
        self.permutations = permutations
        self.draws = 0  # counts next() calls (not in the official code): the iterator's state

    def __iter__(self):
        return self

    def __next__(self):
        self.draws += 1
        self.i += 1
        if self.i == self.length:
            self.i = 0
            self.permutations.shuffle(self.original, self.data_list)
        return self.data_list[self.i]


def class_aware_sample_generator(cls_iter, data_iter_list, n, num_samples_cls=1):
    i = 0
    j = 0
    while i < n:
        if j >= num_samples_cls:
            j = 0
        if j == 0:
            temp_tuple = next(zip(*[data_iter_list[next(cls_iter)]] * num_samples_cls))
            yield temp_tuple[j]
        else:
            yield temp_tuple[j]
        i += 1
        j += 1


class OfficialClassAwareSampler:
    def __init__(self, labels, num_samples_cls, num_samples, seed):
        num_classes = len(np.unique(labels))
        class_seq, *item_seqs = np.random.SeedSequence([seed, 0]).spawn(1 + num_classes)
        self.class_iter = RandomCycleIter(range(num_classes), _Permutations(class_seq))
        cls_data_list = [list() for _ in range(num_classes)]
        for i, label in enumerate(labels):
            cls_data_list[label].append(i)
        self.data_iter_list = [RandomCycleIter(x, _Permutations(s)) for x, s in zip(cls_data_list, item_seqs)]
        self.num_samples = num_samples
        self.num_samples_cls = num_samples_cls

    def __iter__(self):
        return class_aware_sample_generator(self.class_iter, self.data_iter_list,
                                            self.num_samples, self.num_samples_cls)


@pytest.mark.parametrize("k, length", [(4, 40), (4, 37), (3, 50), (1, 23), (7, 9)])
def test_continue_matches_the_official_iteration_across_epochs(labels, k, length):
    official = OfficialClassAwareSampler(labels, k, length, seed=5)
    ours = ClassAwareSampler(labels, samples_per_class=k, seed=5, num_samples=length)
    assert ours.cycles == "continue"  # the official behaviour is the default
    for epoch in range(6):
        ours.set_epoch(epoch)
        assert list(ours) == list(official), epoch
    # the cycles went on: a restarting sampler gives other epochs after the first
    restart = ClassAwareSampler(labels, samples_per_class=k, seed=5, num_samples=length, cycles="restart")
    ours.set_epoch(0)
    assert list(restart) == list(ours)
    later = []
    for epoch in range(1, 6):
        restart.set_epoch(epoch)
        ours.set_epoch(epoch)
        later.append(list(restart) == list(ours))
    assert not any(later)


@pytest.mark.parametrize("epoch", [0, 1, 2, 3, 7])
def test_position_equals_the_state_of_an_unbroken_run(labels, epoch):
    """Resume: a fresh sampler set to epoch e stands where epochs 0..e-1 left the iterators."""
    k, length = 4, 38
    official = OfficialClassAwareSampler(labels, k, length, seed=2)
    for _ in range(epoch):
        list(official)
    fresh = ClassAwareSampler(labels, samples_per_class=k, seed=2, num_samples=length)
    fresh.set_epoch(epoch)
    position = fresh.position()
    assert position.class_visits == official.class_iter.draws
    assert position.items.tolist() == [it.draws for it in official.data_iter_list]
    assert list(fresh) == list(official)  # and the epoch it yields is the one that follows


def test_resume_is_exact_at_any_epoch_and_rank(labels):
    w, length = 3, 60
    run = [ClassAwareSampler(labels, seed=9, num_samples=length, num_replicas=w, rank=r) for r in range(w)]
    straight = {}
    for epoch in range(4):
        for r, s in enumerate(run):
            s.set_epoch(epoch)
            straight[epoch, r] = list(s)
    for epoch in (3, 1, 2, 0):  # any order, fresh objects: the same shares
        for r in range(w):
            fresh = ClassAwareSampler(labels, seed=9, num_samples=length, num_replicas=w, rank=r)
            fresh.set_epoch(epoch)
            assert list(fresh) == straight[epoch, r]


def test_continue_shards_the_official_stream(labels):
    """DDP: rank r takes positions r, r + W, ... of the one official stream, every epoch."""
    w, length = 3, 40  # padded to 42 = 14 per rank: the global epoch is 42 items
    official = OfficialClassAwareSampler(labels, 4, 42, seed=1)
    for epoch in range(4):
        stream = list(official)
        for r in range(w):
            shard = ClassAwareSampler(labels, seed=1, num_samples=length, num_replicas=w, rank=r)
            shard.set_epoch(epoch)
            assert list(shard) == stream[r::w]


def test_restart_option_starts_every_epoch_fresh(labels):
    s = ClassAwareSampler(labels, seed=4, num_samples=24, cycles="restart")
    for epoch in range(3):
        s.set_epoch(epoch)
        assert s.position().class_visits == 0 and not s.position().items.any()
        # the class order opens with a full permutation of the 5 classes in every epoch
        first_visits = labels[np.asarray(list(s))].reshape(-1, 4)[:5, 0]
        assert sorted(first_visits.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cycles"):
        ClassAwareSampler(labels, cycles="reset")
    with pytest.raises(ValueError, match="epoch"):
        s.set_epoch(-1)


def test_trainer_loader_epoch_is_the_trained_items():
    """train_loader gives the class-aware sampler steps × batch items, so the next epoch's
    cycles continue after exactly what was trained on."""
    from oltr.train import load_config
    from oltr.train.data import build_data, steps_per_epoch, train_loader

    config = load_config("digits_lt_stage2", ["device=cpu", "progress=false", "batch_size=32"])
    data = build_data(config)
    loader = train_loader(config, data)
    steps = steps_per_epoch(config, data)
    assert steps == len(data.train) // 32
    assert loader.sampler.total_samples == steps * 32 and len(loader) == steps
    assert loader.sampler.cycles == "continue"


@pytest.mark.parametrize("kind", ["shuffle", "class_aware", "square_root", "progressive"])
def test_every_train_loader_sampler_is_an_epoch_sampler(kind):
    """The trainer calls set_epoch on whatever train_loader built (EpochSampler says it can)."""
    from torch.utils.data import SequentialSampler

    from oltr.train import load_config
    from oltr.train.data import EpochSampler, build_data, train_loader

    config = load_config("digits_lt_stage1", ["device=cpu", "progress=false", f"sampler.kind={kind}"])
    sampler = train_loader(config, build_data(config)).sampler
    assert isinstance(sampler, EpochSampler)
    sampler.set_epoch(1)
    assert not isinstance(SequentialSampler(range(3)), EpochSampler)  # no set_epoch: not one
