"""Many / medium / few-shot class groups from training counts.

Shared by :mod:`oltr.metrics` (per-group accuracy and open-set metrics) and
:mod:`oltr.datasets` (checking that every group exists).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["SHOT_RULES", "ShotGroups", "shot_groups"]

SHOT_RULES = ("official", "paper")


class ShotGroups(NamedTuple):
    """Boolean class masks, each of shape ``(K,)``; every class is in exactly one group."""

    many: np.ndarray
    medium: np.ndarray
    few: np.ndarray


def shot_groups(
    train_counts,
    many_thr: int = 100,
    few_thr: int = 20,
    rule: str = "official",
) -> ShotGroups:
    """Split classes into many / medium / few-shot groups by their training count.

    Args:
        train_counts: ``(K,)`` integer array, training images per class.
        many_thr, few_thr: the thresholds (100 and 20 in OLTR).
        rule: ``"official"`` — the official code (``utils.shot_acc``): many if
            ``count >= many_thr``, few if ``count <= few_thr``; ``"paper"`` — the paper
            (and the pre-2019-08-05 code, and Decoupling): many if ``count > many_thr``,
            few if ``count < few_thr``. Medium is every other class.

    Returns:
        :class:`ShotGroups` of three boolean ``(K,)`` masks.
    """
    counts = np.asarray(train_counts)
    if counts.ndim != 1:
        raise ValueError(f"train_counts must be 1-D (one count per class), got shape {counts.shape}")
    if counts.size and (not np.issubdtype(counts.dtype, np.number) or np.any(counts < 0)):
        raise ValueError("train_counts must hold non-negative numbers")
    if not few_thr < many_thr:  # also refuses a NaN threshold (every comparison with NaN is False)
        raise ValueError(f"few_thr ({few_thr}) must be smaller than many_thr ({many_thr})")
    if rule == "official":
        many = counts >= many_thr
        few = counts <= few_thr
    elif rule == "paper":
        many = counts > many_thr
        few = counts < few_thr
    else:
        raise ValueError(f"rule must be one of {SHOT_RULES}, got {rule!r}")
    return ShotGroups(many=many, medium=~many & ~few, few=few)
