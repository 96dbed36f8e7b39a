"""Digits-LT: scikit-learn's 8×8 digits, long-tailed, with an open set (fastest tests)."""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from oltr.data.splits import make_balanced_split, make_longtail_split, remap_labels
from oltr.datasets.bundle import OpenLTData

__all__ = ["DIGITS_LT_COUNTS", "digits_lt"]

DIGITS_LT_COUNTS = (120, 60, 30, 15, 8, 4)
_KNOWN = (0, 1, 2, 3, 4, 5)
_UNKNOWN = (6, 7, 8, 9)
_VAL, _TEST, _OPEN = 10, 40, 40


@lru_cache(maxsize=4)
def _build(seed: int) -> OpenLTData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 intensities -> 0..255 uint8
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    y = digits.target.astype(np.int64)
    val = make_balanced_split(y, _VAL, seed=seed, classes=_KNOWN)
    test = make_balanced_split(y, _TEST, seed=seed + 1, classes=_KNOWN, exclude=val)
    used = np.concatenate([val, test])
    train = make_longtail_split(y, DIGITS_LT_COUNTS, seed=seed + 2, classes=_KNOWN, exclude=used)
    open_ = make_balanced_split(y, _OPEN, seed=seed + 3, classes=_UNKNOWN)
    return OpenLTData(
        name="digits_lt",
        train_images=images[train],
        train_labels=remap_labels(y[train], _KNOWN),
        val_images=images[val],
        val_labels=remap_labels(y[val], _KNOWN),
        test_images=images[test],
        test_labels=remap_labels(y[test], _KNOWN),
        open_images=images[open_],
        open_labels=np.full(open_.size, -1, dtype=np.int64),
        class_names=tuple(str(c) for c in _KNOWN),
        unknown_class_names=tuple(str(c) for c in _UNKNOWN),
        known_classes=_KNOWN,
        unknown_classes=_UNKNOWN,
        train_counts=DIGITS_LT_COUNTS,
    )


def digits_lt(seed: int = 0) -> OpenLTData:
    """Long-tailed digits with an open set, built from ``sklearn.datasets.load_digits``.

    8×8 images scaled from 0..16 to uint8 0..255. Known digits 0–5 with
    120/60/30/15/8/4 training images (official groups: many = 0, medium = 1, 2,
    few = 3, 4, 5); digits 6–9 are the open set. val 10 and test 40 per known digit,
    open 40 per unknown digit; train, val and test are disjoint. ``seed`` changes
    which images are picked. Built once per seed; every call returns its own read-only
    copy (see :class:`OpenLTData`), so nothing done to one result reaches another.
    """
    return replace(_build(int(seed)))  # replace() copies every array (OpenLTData.__post_init__)
