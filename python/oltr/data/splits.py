"""Seeded builders of long-tailed, open-set and balanced splits of a labelled dataset.

Every builder works on an array of labels and returns **indices** into it (sorted,
``int64``), so the same functions split image lists, arrays or anything indexable.
Randomness comes from ``numpy.random.default_rng(seed)`` only: the same inputs and seed
give the same split on every machine.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import numpy as np

#: integer sequences accepted as class lists, counts and index sets
IntsLike = Union[Sequence[int], np.ndarray]
__all__ = [
    "OpenSplit",
    "check_counts",
    "longtail_counts",
    "make_balanced_split",
    "make_longtail_split",
    "make_open_split",
    "remap_labels",
]

_KINDS = ("exp", "pareto")


def longtail_counts(
    num_classes: int,
    max_count: int,
    kind: str = "exp",
    imbalance: float = 100.0,
    alpha: float = 6.0,
    min_count: int = 1,
) -> np.ndarray:
    """Per-class image counts of a long-tailed split, largest first.

    Class ``i`` of ``K = num_classes`` (``t = i / (K - 1)``) gets, rounded to the nearest
    integer and at least ``min_count``:

    * ``kind="exp"`` (CIFAR-LT style): ``max_count * imbalance ** -t``;
    * ``kind="pareto"`` (power law with shape ``alpha``, as ImageNet-LT was sampled with
      α = 6): ``max_count * (1 + c t) ** -alpha`` with ``c = imbalance ** (1/alpha) - 1``,
      so the head and tail counts equal the exponential profile's and ``alpha`` sets how
      fast the head decays (larger α: a shorter head and a longer flat tail).

    Both end at ``max_count / imbalance`` for the last class.

    Returns:
        ``int64`` array ``(K,)``, non-increasing.
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if max_count < 1:
        raise ValueError(f"max_count must be >= 1, got {max_count!r}")
    if not imbalance >= 1.0:
        raise ValueError(f"imbalance must be >= 1 (max/min count), got {imbalance!r}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count!r}")
    k = int(num_classes)
    t = np.arange(k, dtype=np.float64) / max(k - 1, 1)
    if kind == "exp":
        raw = max_count * np.power(float(imbalance), -t)
    elif kind == "pareto":
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        c = float(imbalance) ** (1.0 / alpha) - 1.0
        raw = max_count * np.power(1.0 + c * t, -float(alpha))
    else:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    return np.maximum(np.floor(raw + 0.5), min_count).astype(np.int64)


def check_counts(counts, num_classes: int, name: str = "train_counts") -> tuple[int, ...]:
    """Check per-class counts and return them as an immutable tuple of ``int``.

    Args:
        counts: one count per class (sequence or array).
        num_classes: the number of classes ``K`` the counts must cover.
        name: what the counts are called in error messages (a key, a file).

    Raises:
        ValueError: not exactly ``K`` entries, an entry that is not a whole number, or a
            negative count; the message names ``name``.
    """
    arr = np.asarray(counts)
    if arr.ndim != 1 or arr.size != num_classes:
        raise ValueError(
            f"{name} must hold one count per class ({num_classes} classes), got shape {arr.shape}"
        )
    if arr.size and arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold integer counts, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise ValueError(f"{name} must hold whole numbers, got {arr.tolist()}")
    if np.any(arr < 0):
        bad = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(f"{name} must be non-negative; class {bad} has {arr[bad]}")
    return tuple(int(c) for c in arr.tolist())


def _labels_1d(labels) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _pick(
    labels: np.ndarray,
    classes: np.ndarray,
    counts: np.ndarray,
    rng: np.random.Generator,
    available: np.ndarray,
) -> np.ndarray:
    chosen = []
    for cls, n in zip(classes.tolist(), counts.tolist()):
        pool = np.flatnonzero((labels == cls) & available)
        if n > pool.size:
            raise ValueError(f"class {cls} has {pool.size} available images, {n} requested")
        chosen.append(rng.choice(pool, size=int(n), replace=False))
    out = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return np.sort(out.astype(np.int64))


def make_longtail_split(
    labels,
    counts: IntsLike,
    seed: int = 0,
    classes: Optional[IntsLike] = None,
    exclude: Optional[IntsLike] = None,
) -> np.ndarray:
    """Pick ``counts[i]`` images of ``classes[i]`` at random (without replacement).

    Args:
        labels: ``(N,)`` integer labels of the full dataset.
        counts: images per class, e.g. from :func:`longtail_counts`.
        seed: seed of the random choice.
        classes: the class of each count (default: the sorted distinct labels, which
            must then number ``len(counts)``); the order decides which class is the head.
        exclude: indices that may not be picked (e.g. already used for val/test).

    Returns:
        Sorted ``int64`` indices into ``labels``.

    Raises:
        ValueError: ``counts`` is not one non-negative whole number per class
            (:func:`check_counts`), or a class has fewer available images than requested.
    """
    lab = _labels_1d(labels)
    cls = np.unique(lab) if classes is None else np.asarray(classes, dtype=np.int64)
    if cls.ndim != 1:
        raise ValueError(f"classes must be 1-D, got shape {cls.shape}")
    cnt = np.asarray(check_counts(counts, cls.size, "counts"), dtype=np.int64)
    available = np.ones(lab.size, dtype=bool)
    if exclude is not None:
        available[np.asarray(exclude, dtype=np.int64)] = False
    return _pick(lab, cls, cnt, np.random.default_rng(seed), available)


def make_balanced_split(
    labels,
    per_class: int,
    seed: int = 0,
    classes: Optional[IntsLike] = None,
    exclude: Optional[IntsLike] = None,
) -> np.ndarray:
    """Pick ``per_class`` images of every class in ``classes`` (a balanced val/test set).

    Same arguments and result as :func:`make_longtail_split` with equal counts.
    """
    lab = _labels_1d(labels)
    cls = np.unique(lab) if classes is None else np.asarray(classes, dtype=np.int64)
    return make_longtail_split(lab, np.full(cls.size, int(per_class)), seed, cls, exclude)


class OpenSplit(NamedTuple):
    """Result of :func:`make_open_split`.

    ``known_indices`` / ``unknown_indices``: sorted ``int64`` indices of images of known /
    held-out classes; ``known_classes`` / ``unknown_classes``: original class ids (known
    ones in the order that :func:`remap_labels` maps to ``0..K-1``).
    """

    known_indices: np.ndarray
    unknown_indices: np.ndarray
    known_classes: np.ndarray
    unknown_classes: np.ndarray


def make_open_split(
    labels, unknown_classes: Sequence[int], known_classes: Optional[Sequence[int]] = None
) -> OpenSplit:
    """Hold out ``unknown_classes`` as the open set.

    Args:
        labels: ``(N,)`` integer labels.
        unknown_classes: class ids held out (their images form the open set).
        known_classes: the known ids in their new order (default: the other labels,
            sorted). Classes in neither list are dropped.
    """
    lab = _labels_1d(labels)
    unknown = np.asarray(unknown_classes, dtype=np.int64)
    present = np.unique(lab)
    missing = np.setdiff1d(unknown, present)
    if missing.size:
        raise ValueError(f"unknown_classes {missing.tolist()} do not occur in labels")
    if known_classes is None:
        known = np.setdiff1d(present, unknown)
    else:
        known = np.asarray(known_classes, dtype=np.int64)
        both = np.intersect1d(known, unknown)
        if both.size:
            raise ValueError(f"classes {both.tolist()} are both known and unknown")
    if known.size == 0:
        raise ValueError("no known class is left")
    return OpenSplit(
        known_indices=np.flatnonzero(np.isin(lab, known)).astype(np.int64),
        unknown_indices=np.flatnonzero(np.isin(lab, unknown)).astype(np.int64),
        known_classes=known,
        unknown_classes=unknown,
    )


def remap_labels(labels, known_classes: Sequence[int]) -> np.ndarray:
    """Map ``known_classes[i]`` → ``i`` and every other label → ``-1`` (``int64``)."""
    lab = _labels_1d(labels)
    known = np.asarray(known_classes, dtype=np.int64)
    if np.unique(known).size != known.size:
        raise ValueError("known_classes has duplicates")
    out = np.full(lab.shape, -1, dtype=np.int64)
    for new, old in enumerate(known.tolist()):
        out[lab == old] = new
    return out
