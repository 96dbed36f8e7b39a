"""Re-balancing samplers of Kang et al., "Decoupling Representation and Classifier for
Long-Tailed Recognition" (ICLR 2020), Eq. 1–2.

Class ``j`` with ``n_j`` training images is drawn with probability ``p_j = n_j^q / sum_i n_i^q``,
then one of its images uniformly:

* ``q = 1`` instance-balanced (plain shuffling, in expectation), ``q = 0`` class-balanced,
* :class:`SquareRootSampler`: ``q = 1/2``;
* :class:`ProgressiveSampler`: ``p_j(t) = (1 - t/T) · p_j^{IB} + (t/T) · p_j^{CB}`` at epoch
  ``t`` of ``T`` — instance-balanced at the start, class-balanced at the end.

Every draw comes from ``PCG64`` seeded with ``(seed, epoch)``, so :meth:`set_epoch` reproduces
any epoch exactly (resume) on every rank; rank ``r`` of ``W`` takes positions ``r, r + W, ...``
of the one global stream (the sharding rule of :mod:`oltr.data.samplers`).
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
from torch.utils.data import Sampler

from oltr.data.samplers import _replicas

__all__ = ["PowerSampler", "ProgressiveSampler", "SquareRootSampler", "class_probabilities"]


def class_probabilities(class_counts: np.ndarray, q: float) -> np.ndarray:
    """``n_j^q / sum_i n_i^q`` (float64 ``(K,)``) for counts ``n_j >= 1``."""
    powered = np.asarray(class_counts, dtype=np.float64) ** float(q)
    return powered / powered.sum()


class PowerSampler(Sampler[int]):
    """Draw ``num_samples`` items per epoch (default: the dataset size) with class
    probabilities ``p_j ∝ n_j^q``, an image uniformly within the class.

    Args:
        labels: ``(N,)`` non-negative integer class labels of the dataset.
        q: the power (0 class-balanced, 1/2 square root, 1 instance-balanced).
        seed, num_samples, num_replicas, rank: as :class:`oltr.data.ClassAwareSampler`.
    """

    def __init__(self, labels, q: float = 0.5, seed: int = 0, num_samples: Optional[int] = None,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None) -> None:
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D array, got shape {lab.shape}")
        if not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0:
            raise ValueError("labels must be non-negative integers (no open-set -1 in training)")
        if not np.isfinite(q) or q < 0:
            raise ValueError(f"q must be finite and >= 0, got {q!r}")
        if num_samples is not None and (int(num_samples) != num_samples or num_samples < 1):
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        self.q, self.seed, self.epoch = float(q), int(seed), 0
        self.classes, inverse = np.unique(lab, return_inverse=True)
        order = np.argsort(inverse, kind="stable").astype(np.int64)
        self.class_counts = np.bincount(inverse, minlength=self.classes.size).astype(np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self.class_counts)[:-1]])
        self._order = order
        self.total_samples = lab.size if num_samples is None else int(num_samples)
        self.num_replicas, self.rank = _replicas(num_replicas, rank)

    def probabilities(self, epoch: int) -> np.ndarray:
        """Class probabilities ``(K,)`` of ``epoch`` (in the order of ``self.classes``)."""
        return class_probabilities(self.class_counts, self.q)

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.total_samples // self.num_replicas)

    def global_stream(self, epoch: int) -> np.ndarray:
        """The epoch's item indices for all ranks together (``len(self) × num_replicas``)."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch])))
        n = len(self) * self.num_replicas
        cls = rng.choice(self.classes.size, size=n, p=self.probabilities(epoch))
        within = np.floor(rng.random(n) * self.class_counts[cls]).astype(np.int64)
        return self._order[self._starts[cls] + within]

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_stream(self.epoch)[self.rank::self.num_replicas].tolist())


class SquareRootSampler(PowerSampler):
    """:class:`PowerSampler` with ``q = 1/2`` (square-root sampling)."""

    def __init__(self, labels, seed: int = 0, num_samples: Optional[int] = None,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None) -> None:
        super().__init__(labels, 0.5, seed, num_samples, num_replicas, rank)


class ProgressiveSampler(PowerSampler):
    """Progressively-balanced sampling: at epoch ``t`` of ``total_epochs`` (``T``), class
    probabilities ``(1 - t/T) · p^{IB} + (t/T) · p^{CB}``."""

    def __init__(self, labels, total_epochs: int, seed: int = 0, num_samples: Optional[int] = None,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None) -> None:
        if int(total_epochs) != total_epochs or total_epochs < 1:
            raise ValueError(f"total_epochs must be a positive integer, got {total_epochs!r}")
        super().__init__(labels, 1.0, seed, num_samples, num_replicas, rank)
        self.total_epochs = int(total_epochs)

    def probabilities(self, epoch: int) -> np.ndarray:
        t = min(epoch, self.total_epochs) / self.total_epochs
        return (1 - t) * class_probabilities(self.class_counts, 1.0) + t * class_probabilities(self.class_counts, 0.0)
