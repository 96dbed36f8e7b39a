"""Moved to :mod:`oltr.inference.outputs` (the one inference path); these names are re-exported."""
from __future__ import annotations

from oltr.inference.outputs import Outputs, classify_features, run_model

__all__ = ["Outputs", "classify_features", "run_model"]
