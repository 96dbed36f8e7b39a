"""Exceptions raised by oltr."""
from __future__ import annotations

__all__ = ["NotFittedError", "OLTRError"]


class OLTRError(Exception):
    """Base class of oltr's own errors."""


class NotFittedError(OLTRError, ValueError):
    """An object (detector, threshold, memory) was used before it was fitted."""
