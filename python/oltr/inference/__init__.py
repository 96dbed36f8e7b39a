"""The one inference path: checkpoint → model → outputs → scores → decisions → report.

Every consumer — the trainer's validation, ``oltr eval``, ``oltr predict``, ``oltr demo``,
:func:`oltr.metrics.evaluate` and :class:`Predictor` — goes through this package:

* :mod:`~oltr.inference.outputs`: :class:`Outputs` (logits, direct features, labels and the
  reachability the forward pass computed) and :class:`ModelRunner` / :func:`run_model`, which
  run a model once per batch and keep the reachability instead of computing it again;
* :mod:`~oltr.inference.scores`: :func:`outlier_scores`, every outlier score (larger = more
  unknown) from one :class:`Outputs`, each computed once;
* :mod:`~oltr.inference.decisions`: :class:`Rejection` (rule, score, threshold) and
  :func:`choose_thresholds` and :func:`choose_group_thresholds` (validation-chosen thresholds,
  one per score or one per score and shot group);
* :mod:`~oltr.inference.report`: :func:`evaluate_outputs`, the one report schema
  (docs/report-schema.md), and :func:`json_ready`;
* :mod:`~oltr.inference.predictor`: :class:`Predictor` and :class:`Prediction`;
* :mod:`~oltr.inference.checkpoint_eval`: :func:`evaluate_checkpoint` (``oltr eval``);
* :mod:`~oltr.inference.class_means`: :class:`ClassMeanAccumulator`, the one class-mean helper.

Submodules are imported lazily (this package is imported by :mod:`oltr.model`).
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ClassMeanAccumulator": "oltr.inference.class_means",
    "Outputs": "oltr.inference.outputs",
    "ModelRunner": "oltr.inference.outputs",
    "run_model": "oltr.inference.outputs",
    "classify_features": "oltr.inference.outputs",
    "SCORE_NAMES": "oltr.inference.scores",
    "outlier_scores": "oltr.inference.scores",
    "reach_scale_of": "oltr.inference.scores",
    "RULES": "oltr.inference.decisions",
    "Rejection": "oltr.inference.decisions",
    "choose_group_thresholds": "oltr.inference.decisions",
    "choose_thresholds": "oltr.inference.decisions",
    "REPORT_SCHEMA": "oltr.inference.report",
    "evaluate_outputs": "oltr.inference.report",
    "json_ready": "oltr.inference.report",
    "Prediction": "oltr.inference.predictor",
    "Predictor": "oltr.inference.predictor",
    "evaluate_checkpoint": "oltr.inference.checkpoint_eval",
}

__all__ = [
    "REPORT_SCHEMA",
    "RULES",
    "SCORE_NAMES",
    "ClassMeanAccumulator",
    "ModelRunner",
    "Outputs",
    "Prediction",
    "Predictor",
    "Rejection",
    "choose_group_thresholds",
    "choose_thresholds",
    "classify_features",
    "evaluate_checkpoint",
    "evaluate_outputs",
    "json_ready",
    "outlier_scores",
    "reach_scale_of",
    "run_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'oltr.inference' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
