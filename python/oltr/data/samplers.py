"""Seeded samplers that shard across torch.distributed ranks without overlap.

Sharding rule (both samplers): one global index stream is generated identically on
every rank from ``(seed, epoch)``; rank ``r`` of ``W`` takes positions ``r, r + W,
r + 2W, ...``. So with a per-rank batch of ``b``, the union of the ranks' ``s``-th
batches is exactly the ``s``-th batch of size ``b·W`` of a single process using the same
sampler with ``num_replicas=1`` — a DDP run sees the same global batches as one process.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Sized, Union

import numpy as np
from torch.utils.data import Sampler

__all__ = ["CYCLES", "ClassAwareSampler", "ShardedSampler", "StreamPosition", "merge_shards"]

#: ``ClassAwareSampler(cycles=...)``: official cycles that go on across epochs, or fresh ones.
CYCLES = ("continue", "restart")


def _replicas(num_replicas: Optional[int], rank: Optional[int]) -> tuple[int, int]:
    if num_replicas is None or rank is None:
        import torch.distributed as dist

        initialised = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if initialised else 1
        if rank is None:
            rank = dist.get_rank() if initialised else 0
    if int(num_replicas) != num_replicas or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive integer, got {num_replicas!r}")
    if int(rank) != rank or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be in [0, {num_replicas}), got {rank!r}")
    return int(num_replicas), int(rank)


def _cycle_slice(seq: np.random.SeedSequence, items: np.ndarray, start: int, length: int) -> np.ndarray:
    """Items ``start .. start + length - 1`` of an endless run of random permutations of
    ``items`` (cycle ``j`` = positions ``j·m .. j·m + m - 1``, ``m = items.size``).

    Cycle ``j`` is ``items[argsort(u_j)]`` with ``u_j`` the ``j``-th block of ``m`` uniform
    doubles of ``PCG64(seq)``; each double takes one step of the generator, so the stream is
    entered at any cycle by advancing the generator ``j·m`` steps — the same items as
    drawing every earlier cycle first.
    """
    m = items.size
    first, end = start // m, -(-(start + length) // m)
    bits = np.random.PCG64(seq)
    bits.advance(first * m)
    order = np.argsort(np.random.Generator(bits).random((end - first, m)), axis=1, kind="stable")
    offset = start - first * m
    return items[order].reshape(-1)[offset : offset + length]


class StreamPosition(NamedTuple):
    """Where an epoch of :class:`ClassAwareSampler` starts in the endless streams.

    ``class_visits``: class visits made before the epoch (position in the class cycles);
    ``items``: ``int64 (K,)``, items drawn from each class's own cycles before the epoch.
    """

    class_visits: int
    items: np.ndarray


class ClassAwareSampler(Sampler[int]):
    """The official class-aware sampler (``data/ClassAwareSampler.py``), seeded.

    The stream visits classes in a cycle that is reshuffled at the start of every cycle;
    each visit yields ``samples_per_class`` consecutive items from that class's own cycle
    over its images (also reshuffled each cycle), so a class with fewer images than
    ``samples_per_class`` repeats images within a visit. A batch of 128 with the default
    4 therefore holds 32 classes × 4 images, as in the official code.

    Epochs (``cycles``):

    * ``"continue"`` (default, as the official sampler, whose iterators live on across
      epochs): the class cycle and every per-class cycle go on where the previous epoch
      stopped. Epoch ``e`` is visits ``e·V .. (e+1)·V - 1`` of one endless stream, with
      ``V = ceil(L / samples_per_class)`` visits per epoch of global length ``L``; as in
      the official generator, an epoch starts with a new visit and the unused rest of its
      last visit is drawn but dropped.
    * ``"restart"``: every epoch starts fresh cycles drawn from ``(seed, epoch)``.

    Either way the stream of epoch ``e`` is a function of ``(seed, e)`` alone — no state
    is carried in the object — so :meth:`set_epoch` reproduces any epoch exactly (e.g. on
    ``--resume``), on every rank. Cycles are random permutations drawn from a
    ``numpy`` ``PCG64`` seeded with ``seed`` (not the official unseeded ``random``);
    epoch 0 is the same in both modes.

    Length: the official length is ``max_class_count × num_classes`` (1.28M for
    ImageNet-LT) and the official trainer stops each epoch after ``len(train) /
    batch_size`` steps; ``num_samples`` sets a different global length (the trainer
    passes its steps × batch size, so that ``"continue"`` resumes exactly after the items
    it trained on). ``len(sampler)`` is this rank's share, ``ceil(num_samples /
    num_replicas)``: the global stream (``L = len(sampler) × num_replicas`` items) is
    extended (not wrapped) so that every rank gets the same number of items.

    Args:
        labels: ``(N,)`` non-negative integer class labels of the dataset (e.g.
            ``dataset.labels``); classes are the distinct labels.
        samples_per_class: consecutive items per class visit (official: 4).
        seed: seed of the stream; the same on every rank.
        num_samples: global stream length per epoch (all ranks together); ``None`` =
            official.
        num_replicas, rank: DDP world size and this process's rank; default from
            ``torch.distributed`` when it is initialised, else 1 and 0.
        cycles: ``"continue"`` (official) or ``"restart"``, see above.
    """

    def __init__(
        self,
        labels,
        samples_per_class: int = 4,
        seed: int = 0,
        num_samples: Optional[int] = None,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        cycles: str = "continue",
    ) -> None:
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D array, got shape {lab.shape}")
        if not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0:
            raise ValueError("labels must be non-negative integers (no open-set -1 in training)")
        if int(samples_per_class) != samples_per_class or samples_per_class < 1:
            raise ValueError(f"samples_per_class must be a positive integer, got {samples_per_class!r}")
        if cycles not in CYCLES:
            raise ValueError(f"cycles must be one of {CYCLES}, got {cycles!r}")
        self.classes, inverse = np.unique(lab, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=self.classes.size))[:-1]
        self._pools = np.split(order.astype(np.int64), bounds)
        self.class_counts = np.array([p.size for p in self._pools], dtype=np.int64)
        default = int(self.class_counts.max()) * int(self.classes.size)
        if num_samples is not None and (int(num_samples) != num_samples or num_samples < 1):
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        self.total_samples = default if num_samples is None else int(num_samples)
        self.samples_per_class = int(samples_per_class)
        self.seed = int(seed)
        self.cycles = cycles
        self.epoch = 0
        self.num_replicas, self.rank = _replicas(num_replicas, rank)
        self.num_samples = -(-self.total_samples // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's stream (call before iterating, as with DistributedSampler)."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    @property
    def visits_per_epoch(self) -> int:
        """Class visits in one epoch: ``ceil(num_samples × num_replicas / samples_per_class)``."""
        return -(-self.num_samples * self.num_replicas // self.samples_per_class)

    def _streams(self) -> tuple[np.random.SeedSequence, list[np.random.SeedSequence]]:
        key = [self.seed, 0 if self.cycles == "continue" else self.epoch]
        class_seq, *item_seqs = np.random.SeedSequence(key).spawn(1 + self.classes.size)
        return class_seq, item_seqs

    def position(self) -> StreamPosition:
        """Where the current epoch starts in the class and per-class cycles (all zero with
        ``cycles="restart"``); equal to the counts an unbroken run of epochs ``0 ..
        epoch - 1`` has used."""
        k_classes = self.classes.size
        visits = self.epoch * self.visits_per_epoch if self.cycles == "continue" else 0
        class_seq, _ = self._streams()
        full, rest = divmod(visits, k_classes)
        per_class = np.full(k_classes, full, dtype=np.int64)
        per_class[_cycle_slice(class_seq, np.arange(k_classes), full * k_classes, rest)] += 1
        return StreamPosition(visits, per_class * self.samples_per_class)

    def global_indices(self) -> np.ndarray:
        """The whole epoch stream before sharding, ``int64 (num_samples × num_replicas,)``."""
        length = self.num_samples * self.num_replicas
        k = self.samples_per_class
        visits = self.visits_per_epoch
        start = self.position()
        class_seq, item_seqs = self._streams()
        visit_class = _cycle_slice(class_seq, np.arange(self.classes.size), start.class_visits, visits)
        out = np.empty((visits, k), dtype=np.int64)
        for c, (pool, seq) in enumerate(zip(self._pools, item_seqs)):
            rows = np.flatnonzero(visit_class == c)
            if rows.size:
                items = _cycle_slice(seq, pool, int(start.items[c]), rows.size * k)
                out[rows] = items.reshape(rows.size, k)
        return out.reshape(-1)[:length]

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_indices()[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


class ShardedSampler(Sampler[int]):
    """A plain (optionally shuffled) seeded sampler with the same sharding.

    The global order is a permutation of ``range(N)`` drawn from ``(seed, epoch)``
    (``shuffle=True``) or ``0..N-1`` (``shuffle=False``); rank ``r`` takes positions
    ``r, r + W, ...``.

    Args:
        data_source: a dataset (its ``len``) or the number of items ``N``.
        shuffle, seed: as in ``torch.utils.data.DistributedSampler``.
        num_replicas, rank: as :class:`ClassAwareSampler`.
        pad: ``True`` (training): the global order is extended by repeating its start
            so every rank gets ``ceil(N / W)`` items (DDP needs equal step counts);
            ``False`` (evaluation, prediction): no item is repeated, ranks may get one
            item fewer, and global position ``j·W + r`` is rank ``r``'s ``j``-th item —
            which is how gathered outputs are put back in input order.
    """

    def __init__(
        self,
        data_source: Union[Sized, int],
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        pad: bool = True,
    ) -> None:
        n = data_source if isinstance(data_source, (int, np.integer)) else len(data_source)
        if n < 0:
            raise ValueError(f"data_source length must be >= 0, got {n}")
        self.num_items = int(n)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.pad = bool(pad)
        self.epoch = 0
        self.num_replicas, self.rank = _replicas(num_replicas, rank)
        if self.pad:
            self.num_samples = math.ceil(self.num_items / self.num_replicas)
        else:
            self.num_samples = len(range(self.rank, self.num_items, self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's permutation (call before iterating)."""
        self.epoch = int(epoch)

    def global_indices(self) -> np.ndarray:
        """The whole epoch order before sharding (padded when ``pad``), ``int64``."""
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
            order = rng.permutation(self.num_items).astype(np.int64)
        else:
            order = np.arange(self.num_items, dtype=np.int64)
        if self.pad and self.num_items:
            total = self.num_samples * self.num_replicas
            order = np.resize(order, total)
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_indices()[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


def merge_shards(shards: Sequence[Any]):
    """Interleave per-rank outputs back into the global order of the sharded stream.

    ``shards[r]`` holds rank ``r``'s outputs (numpy arrays or torch tensors, items along
    axis 0) in the order its sampler yielded them; item ``j`` of rank ``r`` goes to global
    position ``j·W + r``. With :class:`ShardedSampler` (``shuffle=False, pad=False``)
    the result is in input order — how a sharded evaluation or prediction is put back
    together after gathering (e.g. ``torch.distributed.all_gather_object``).

    Raises:
        ValueError: the shard lengths are not those of a strided split (rank ``r`` must
            hold ``ceil((N - r) / W)`` items).
    """
    if len(shards) == 0:
        raise ValueError("shards is empty")
    w = len(shards)
    lengths = [len(s) for s in shards]
    n = sum(lengths)
    expected = [len(range(r, n, w)) for r in range(w)]
    if lengths != expected:
        raise ValueError(f"shard lengths {lengths} are not a strided split of {n} items (expected {expected})")
    if hasattr(shards[0], "detach"):  # torch tensors in, a tensor out
        import torch

        tensors = [torch.as_tensor(s) for s in shards]
        merged = tensors[0].new_empty((n, *tensors[0].shape[1:]))
        for r, part in enumerate(tensors):
            merged[r::w] = part
        return merged
    arrays = [np.asarray(s) for s in shards]
    out = np.empty((n, *arrays[0].shape[1:]), dtype=np.result_type(*arrays))
    for r, array in enumerate(arrays):
        out[r::w] = array
    return out
