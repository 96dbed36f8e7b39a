"""Embedded real data, no network: :func:`fashion_lt` and :func:`digits_lt`.

Both return an :class:`OpenLTData` (uint8 image arrays, labels ``0..K-1`` and ``-1`` for
the open set, class names, training counts) with ``.torch_dataset(split)``.
"""
from __future__ import annotations

from oltr.datasets.bundle import SPLITS, OpenLTData
from oltr.datasets.digits import DIGITS_LT_COUNTS, digits_lt
from oltr.datasets.fashion import FASHION_LT_PATH, fashion_lt

__all__ = ["DIGITS_LT_COUNTS", "FASHION_LT_PATH", "OpenLTData", "SPLITS", "digits_lt", "fashion_lt"]
