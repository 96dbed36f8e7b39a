"""Moved to :mod:`oltr.inference.checkpoint_eval` (the one inference path); re-exported."""
from __future__ import annotations

from oltr.inference.checkpoint_eval import evaluate_checkpoint

__all__ = ["evaluate_checkpoint"]
