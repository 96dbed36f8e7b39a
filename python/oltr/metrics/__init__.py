"""Metrics: closed set, the official OLTR open-set protocol, and the modern one.

Score direction: open-set functions take **outlier scores** (larger = more unknown, as
pytorch-ood); labels and predictions use ``-1`` for unknown / rejected. Undefined values
(no known sample, no unknown sample, an empty shot group) are ``nan``, never an error.

* closed: :func:`top1_accuracy`, :func:`macro_f1`, :func:`per_class_accuracy`,
  :func:`shot_accuracy`;
* official open set: :func:`predict_open`, :func:`reject_by_score`,
  :func:`open_set_f_measure` (``legacy=True`` for the paper's pre-fix value),
  :func:`open_set_accuracy`, :func:`rejection_metrics`;
* modern open set: :func:`roc_curve`, :func:`auroc`, :func:`fpr_at_tpr`, :func:`aupr`,
  :func:`oscr_curve`, :func:`oscr`, :func:`open_set_metrics`,
  :func:`open_set_metrics_by_group`; :func:`threshold_at_tpr` picks a threshold on
  validation data;
* :func:`evaluate`: all of the above in one nested report (``oltr.report/1``, the schema
  ``oltr eval --json`` writes; see docs/report-schema.md); :func:`flatten_report` gives the
  flat keys of earlier versions.
"""
from __future__ import annotations

from oltr.data.shots import SHOT_RULES, ShotGroups, shot_groups
from oltr.metrics.closed import macro_f1, per_class_accuracy, shot_accuracy, top1_accuracy
from oltr.metrics.evaluate import REPORT_SCHEMA, Report, evaluate, flatten_report, rejection_metrics
from oltr.metrics.official import (
    OFFICIAL_OPEN_THRESHOLD,
    open_set_accuracy,
    open_set_f_measure,
    predict_open,
    reject_by_score,
)
from oltr.metrics.open_set import OPEN_SET_METRICS, open_set_metrics, open_set_metrics_by_group
from oltr.metrics.ranking import (
    aupr,
    auroc,
    fpr_at_tpr,
    oscr,
    oscr_curve,
    roc_curve,
    threshold_at_tpr,
)

__all__ = [
    "OFFICIAL_OPEN_THRESHOLD",
    "OPEN_SET_METRICS",
    "REPORT_SCHEMA",
    "Report",
    "SHOT_RULES",
    "ShotGroups",
    "aupr",
    "auroc",
    "evaluate",
    "flatten_report",
    "fpr_at_tpr",
    "macro_f1",
    "open_set_accuracy",
    "open_set_f_measure",
    "open_set_metrics",
    "open_set_metrics_by_group",
    "oscr",
    "oscr_curve",
    "per_class_accuracy",
    "predict_open",
    "reject_by_score",
    "rejection_metrics",
    "roc_curve",
    "shot_accuracy",
    "shot_groups",
    "threshold_at_tpr",
    "top1_accuracy",
]
