"""Metrics of a model's outputs: closed set, the official open-set protocol, modern metrics.

Glue over :mod:`oltr.metrics` and :mod:`oltr.scores`. Every score is an **outlier score**
(larger = more unknown). Thresholds chosen on validation keep ``val_keep`` of the known
validation samples (a sample is unknown when its score is above the threshold).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from oltr.train.inference import Outputs

__all__ = ["SCORE_NAMES", "choose_thresholds", "evaluate_outputs", "json_ready", "outlier_scores"]

#: Scores reported (``reachability`` only when a memory / class means exist).
SCORE_NAMES = ("msp", "max_logit", "energy", "reachability")


def outlier_scores(
    logits: np.ndarray, features: np.ndarray, centroids: Optional[np.ndarray],
    reach_scale: float = 10.0,
) -> dict[str, np.ndarray]:
    """``{name: (N,) float}`` outlier scores of :data:`SCORE_NAMES` (see :mod:`oltr.scores`).

    ``reachability`` is ``-reach_scale / min_k ||f - c_k||`` over the ``centroids`` (K, D)
    (the OLTR memory, or the class means of the plain model's training features).
    """
    from oltr.scores import energy_score, max_logit_score, msp_score, reachability_score

    scores = {
        "msp": np.asarray(msp_score(logits), dtype=np.float64),
        "max_logit": np.asarray(max_logit_score(logits), dtype=np.float64),
        "energy": np.asarray(energy_score(logits), dtype=np.float64),
    }
    if centroids is not None and features.shape[0]:
        scores["reachability"] = np.asarray(
            reachability_score(np.ascontiguousarray(features, dtype=np.float32),
                               np.ascontiguousarray(centroids, dtype=np.float32), scale=reach_scale),
            dtype=np.float64,
        )
    return scores


def choose_thresholds(scores: Mapping[str, np.ndarray], keep: float) -> dict[str, float]:
    """Per score, the smallest threshold accepting ``keep`` of the (known) validation samples."""
    from oltr.metrics.ranking import threshold_at_tpr

    return {name: threshold_at_tpr(values, keep) for name, values in scores.items()}


def _shot_kwargs(eval_cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {"many_thr": int(eval_cfg["many_shot"]), "few_thr": int(eval_cfg["few_shot"]),
            "rule": "paper" if eval_cfg["paper_groups"] else "official"}


def _official_block(preds: np.ndarray, labels: np.ndarray, train_counts: np.ndarray,
                    shot: Mapping[str, Any]) -> dict[str, Any]:
    from oltr.metrics.closed import shot_accuracy, top1_accuracy
    from oltr.metrics.official import open_set_accuracy, open_set_f_measure

    known = labels != -1
    groups = shot_accuracy(preds[known], labels[known], train_counts, **shot)
    return {
        "f_measure": open_set_f_measure(preds, labels),
        "f_measure_legacy": open_set_f_measure(preds, labels, legacy=True),
        "open_set_accuracy": open_set_accuracy(preds, labels),
        "top1": top1_accuracy(preds[known], labels[known]),
        **groups,
        "rejected_known": float(np.mean(preds[known] == -1)) if known.any() else float("nan"),
    }


def evaluate_outputs(
    outputs: Outputs, train_counts: np.ndarray, eval_cfg: Mapping[str, Any],
    centroids: Optional[np.ndarray] = None, thresholds: Optional[Mapping[str, float]] = None,
    open_set: bool = False, reach_scale: float = 10.0,
) -> dict[str, Any]:
    """All metrics of ``outputs`` as a JSON-ready dict.

    Args:
        outputs: logits, features and labels (``-1`` = open set).
        train_counts: ``(K,)`` training images per class (shot groups).
        eval_cfg: the config's ``eval`` section (threshold, shot rule).
        centroids: ``(K, D)`` memory / class means for the reachability score, or None.
        thresholds: val-chosen outlier-score thresholds (``{"msp": t, ...}``).
        open_set: also compute the open-set blocks (needs samples labelled ``-1``).

    Returns:
        ``{"closed": {top1, macro_f1, many, medium, few}}`` and, with ``open_set``,
        ``"official"`` (max-softmax < ``open_threshold``), ``"val_threshold"`` (the MSP
        threshold chosen on validation: the same official metrics at that threshold) and
        ``"modern"`` ({score: {auroc, fpr_at_tpr, aupr_in, aupr_out, oscr, groups: {many,
        medium, few}}}).
    """
    from oltr.metrics.closed import macro_f1, shot_accuracy, top1_accuracy
    from oltr.metrics.official import predict_open, reject_by_score
    from oltr.metrics.open_set import open_set_metrics, open_set_metrics_by_group

    logits, labels = outputs.logits, outputs.labels
    counts = np.asarray(train_counts)
    shot = _shot_kwargs(eval_cfg)
    known = labels != -1
    preds = logits.argmax(axis=1).astype(np.int64)
    result: dict[str, Any] = {
        "num_known": int(known.sum()),
        "num_unknown": int((~known).sum()),
        "closed": {
            "top1": top1_accuracy(preds[known], labels[known]),
            "macro_f1": macro_f1(preds[known], labels[known]),
            **shot_accuracy(preds[known], labels[known], counts, **shot),
        },
    }
    if not open_set:
        return result
    threshold = float(eval_cfg["open_threshold"])
    official_preds, _ = predict_open(logits, threshold)
    result["official"] = {"threshold": threshold, **_official_block(official_preds, labels, counts, shot)}
    scores = outlier_scores(logits, outputs.features, centroids, reach_scale)
    if thresholds and "msp" in thresholds:
        t = float(thresholds["msp"])
        val_preds = reject_by_score(preds, scores["msp"], t)
        result["val_threshold"] = {"score": "msp", "max_softmax_threshold": -t,
                                   **_official_block(val_preds, labels, counts, shot)}
    correct = preds[known] == labels[known]
    modern = {}
    for name, values in scores.items():
        block = open_set_metrics(values[known], values[~known], correct)
        block["groups"] = open_set_metrics_by_group(
            values[known], labels[known], values[~known], correct, counts,
            many_thr=shot["many_thr"], few_thr=shot["few_thr"], rule=shot["rule"],
        )
        modern[name] = block
    result["modern"] = modern
    return result


def json_ready(value: Any) -> Any:
    """``value`` with NaN/inf floats as ``None`` and numpy/torch scalars and arrays as Python
    numbers and lists, so ``json.dumps`` writes strict JSON (an empty shot group is ``null``)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist"):
        return json_ready(value.tolist())
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    return value
