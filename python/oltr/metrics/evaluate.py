"""``evaluate``: every closed-set, official open-set and modern open-set number at once."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from oltr.metrics._arrays import as_labels, as_scores
from oltr.metrics.closed import macro_f1, shot_accuracy, top1_accuracy
from oltr.metrics._logits import argmax_and_msp, per_row
from oltr.metrics.official import (
    OFFICIAL_OPEN_THRESHOLD,
    open_set_accuracy,
    open_set_f_measure,
    reject_by_score,
)
from oltr.metrics.open_set import open_set_metrics, open_set_metrics_by_group

__all__ = ["evaluate", "rejection_metrics"]


def rejection_metrics(
    preds, labels, train_counts, many_thr: int = 100, few_thr: int = 20, rule: str = "official"
) -> dict[str, float]:
    """Numbers of one open-set decision (``preds`` with ``-1`` = rejected), as the
    official ``eval`` reports them: ``f_measure``, ``f_measure_legacy``,
    ``openset_acc``, and ``top1``, ``many``, ``medium``, ``few`` over the known samples
    **after** rejection (a rejected known sample counts as wrong)."""
    p, y = as_labels(preds, "preds"), as_labels(labels, "labels")
    known = y != -1
    return {
        "f_measure": open_set_f_measure(p, y),
        "f_measure_legacy": open_set_f_measure(p, y, legacy=True),
        "openset_acc": open_set_accuracy(p, y),
        "top1": top1_accuracy(p[known], y[known]),
        **shot_accuracy(p[known], y[known], train_counts, many_thr, few_thr, rule),
    }


def evaluate(
    logits,
    labels,
    train_counts,
    *,
    scores: Optional[Mapping[str, Any]] = None,
    logit_scores: Sequence[str] = ("msp", "max_logit", "energy"),
    open_threshold: float = OFFICIAL_OPEN_THRESHOLD,
    reject_thresholds: Optional[Mapping[str, float]] = None,
    tpr: float = 0.95,
    many_thr: int = 100,
    few_thr: int = 20,
    rule: str = "official",
) -> dict[str, float]:
    """Evaluate logits of known (label ``0..K-1``) and unknown (label ``-1``) samples.

    Args:
        logits: ``(N, K)`` logits of the test set, or of test ∪ open set.
        labels: ``(N,)`` labels, ``-1`` for open-set samples.
        train_counts: ``(K,)`` training images per class (defines the shot groups).
        scores: extra **outlier scores** (larger = more unknown), name → ``(N,)``, e.g.
            ``{"reachability": reachability_score(features, centroids)}``.
        logit_scores: logit scores computed here (names of :data:`oltr.scores.LOGIT_SCORES`).
        open_threshold: the official max-softmax threshold (0.1; strict ``<``).
        reject_thresholds: score name → outlier-score threshold chosen on validation
            data (:func:`~oltr.metrics.threshold_at_tpr`); each gives a ``reject.<name>.*``
            block (reject where score ``> threshold``).
        tpr: TPR for ``fpr_at_tpr`` (FPR95 by default).
        many_thr, few_thr, rule: shot groups (official ≥100 / ≤20; ``rule="paper"``:
            >100 / <20).

    Returns:
        A flat ``dict[str, float]`` (``nan`` where undefined, e.g. open-set numbers
        without unknown samples or an empty shot group):

        * ``n_known``, ``n_unknown``, ``tpr``;
        * ``closed.top1``, ``closed.macro_f1``, ``closed.many|medium|few`` — argmax on
          the known samples, no rejection;
        * ``official.threshold``, ``official.f_measure``, ``official.f_measure_legacy``,
          ``official.openset_acc``, ``official.top1``, ``official.many|medium|few`` —
          max softmax ``< open_threshold`` rejected (:func:`rejection_metrics`);
        * for each score ``s``: ``s.auroc``, ``s.fpr_at_tpr``, ``s.aupr_in``,
          ``s.aupr_out``, ``s.oscr`` (known vs all unknown) and
          ``s.<group>.<metric>`` for ``group`` in many/medium/few (the group's known
          samples vs all unknown samples);
        * for each ``reject_thresholds`` entry: ``reject.<s>.threshold`` and the
          :func:`rejection_metrics` keys under ``reject.<s>.``.
    """
    from functools import partial

    from oltr.scores.logits import score_from_logits

    y = as_labels(labels, "labels")
    preds, msp = argmax_and_msp(logits)
    n = y.size
    if preds.size != n:
        raise ValueError(f"logits have {preds.size} rows, labels {n}")
    counts = np.asarray(train_counts)
    if y.max(initial=-1) >= counts.size:
        raise ValueError(f"labels go up to {y.max()}, but train_counts has {counts.size} classes")
    preds_open = preds.copy()
    preds_open[msp < open_threshold] = -1  # the official rule, as predict_open
    known = y != -1
    groups = dict(many_thr=many_thr, few_thr=few_thr, rule=rule)
    out: dict[str, float] = {
        "n_known": float(known.sum()),
        "n_unknown": float((~known).sum()),
        "tpr": float(tpr),
        "closed.top1": top1_accuracy(preds[known], y[known]),
        "closed.macro_f1": macro_f1(preds[known], y[known]),
    }
    for g, v in shot_accuracy(preds[known], y[known], counts, **groups).items():
        out[f"closed.{g}"] = v
    out["official.threshold"] = float(open_threshold)
    for k, v in rejection_metrics(preds_open, y, counts, **groups).items():
        out[f"official.{k}"] = v

    names = list(logit_scores)
    values = per_row(logits, [partial(score_from_logits, name) for name in names])
    all_scores: dict[str, np.ndarray] = {
        name: as_scores(v, name) for name, v in zip(names, values)
    }
    for name, s in (scores or {}).items():
        arr = as_scores(s, f"scores[{name!r}]")
        if arr.size != n:
            raise ValueError(f"scores[{name!r}] has {arr.size} values, labels {n}")
        all_scores[name] = arr
    correct = preds[known] == y[known]
    for name, s in all_scores.items():
        for k, v in open_set_metrics(s[known], s[~known], correct, tpr).items():
            out[f"{name}.{k}"] = v
        by_group = open_set_metrics_by_group(
            s[known], y[known], s[~known], correct, counts, tpr, **groups
        )
        for g, metrics in by_group.items():
            for k, v in metrics.items():
                out[f"{name}.{g}.{k}"] = v
    for name, t in (reject_thresholds or {}).items():
        if name not in all_scores:
            raise ValueError(f"reject_thresholds names unknown score {name!r}; have {sorted(all_scores)}")
        out[f"reject.{name}.threshold"] = float(t)
        rejected = reject_by_score(preds, all_scores[name], float(t))
        for k, v in rejection_metrics(rejected, y, counts, **groups).items():
            out[f"reject.{name}.{k}"] = v
    return out

