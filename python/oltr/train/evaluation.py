"""Moved to :mod:`oltr.inference` (the one inference path); these names are re-exported."""
from __future__ import annotations

from oltr.inference.decisions import choose_thresholds
from oltr.inference.report import evaluate_outputs, json_ready
from oltr.inference.scores import SCORE_NAMES, outlier_scores

__all__ = ["SCORE_NAMES", "choose_thresholds", "evaluate_outputs", "json_ready", "outlier_scores"]
