"""The official OLTR open-set protocol (``run_networks.eval``, ``utils.F_measure``).

Labels are ``0..K-1`` for known samples and ``-1`` for open-set samples; a prediction of
``-1`` means "rejected as unknown". Undefined values are ``nan`` (the official code would
raise ``ZeroDivisionError``).
"""
from __future__ import annotations

import numpy as np

from oltr.metrics._arrays import as_labels, as_scores, as_threshold, nan_mean
from oltr.metrics._logits import argmax_and_msp

__all__ = [
    "OFFICIAL_OPEN_THRESHOLD",
    "open_set_accuracy",
    "open_set_f_measure",
    "predict_open",
    "reject_by_score",
]

OFFICIAL_OPEN_THRESHOLD = 0.1


def predict_open(logits, threshold: float = OFFICIAL_OPEN_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Official open-set decision: argmax, set to ``-1`` where max softmax ``< threshold``.

    The comparison is strict, as in the official code. With ``K`` classes the max
    softmax is at least ``1/K``, so the official 0.1 rejects nothing when ``K <= 10``;
    choose a threshold on validation data instead (:func:`threshold_at_tpr`).

    Args:
        logits: ``(N, K)`` float logits.
        threshold: max-softmax threshold (official 0.1).

    Returns:
        ``(preds int64 (N,), max_prob float64 (N,))`` (computed in float64, in chunks of
        rows, so a large logit matrix is never copied whole).

    Raises:
        ValueError: ``threshold`` is NaN (it would reject nothing, silently).
    """
    threshold = as_threshold(threshold, "threshold")
    preds, max_prob = argmax_and_msp(logits)
    preds[max_prob < threshold] = -1
    return preds, max_prob


def reject_by_score(preds, scores, threshold: float) -> np.ndarray:
    """Copy of ``preds`` with ``-1`` where the outlier score ``> threshold``.

    ``scores`` are outlier scores (larger = more unknown, see :mod:`oltr.scores`), so
    ``reject_by_score(argmax, msp_score(logits), -t)`` is the official rule with a
    max-softmax threshold ``t`` (reject where ``msp < t``).

    Raises:
        ValueError: ``threshold`` is NaN; ``scores`` hold NaN or ±inf.
    """
    threshold = as_threshold(threshold, "threshold")
    p = as_labels(preds, "preds").copy()
    s = as_scores(scores, "scores")
    if s.shape != p.shape:
        raise ValueError(f"scores {s.shape} and preds {p.shape} differ in shape")
    p[s > threshold] = -1
    return p


def open_set_f_measure(preds, labels, legacy: bool = False) -> float:
    """OpenMax-style open-set F-measure (official ``utils.F_measure(openset=True)``).

    * TP: known samples predicted correctly;
    * FP: known samples predicted wrongly — **including** known samples rejected as
      ``-1`` (the fix of 2020-01-29); with ``legacy=True`` rejected known samples are
      not counted (the pre-fix code, behind every F-measure in the paper);
    * FN: open samples accepted as some known class; correctly rejected open samples
      (TN) are not used.

    ``F = 2PR / (P + R + 1e-12)`` with ``P = TP/(TP+FP)`` and ``R = TP/(TP+FN)``.

    Returns:
        The F-measure; ``nan`` when there is no known sample (``TP+FP = 0``) or when
        ``TP + FN = 0`` (P or R undefined).
    """
    p, y = as_labels(preds, "preds"), as_labels(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"preds {p.shape} and labels {y.shape} differ in shape")
    known = y != -1
    tp = int(np.sum((p == y) & known))
    wrong_known = (p != y) & known
    if legacy:
        wrong_known &= p != -1
    fp = int(np.sum(wrong_known))
    fn = int(np.sum((p != y) & ~known))
    if tp + fp == 0 or tp + fn == 0:
        return float("nan")
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return 2 * precision * recall / (precision + recall + 1e-12)


def open_set_accuracy(preds, labels) -> float:
    """Fraction of open-set samples (label ``-1``) predicted ``-1``; ``nan`` if none."""
    p, y = as_labels(preds, "preds"), as_labels(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"preds {p.shape} and labels {y.shape} differ in shape")
    return nan_mean(p[y == -1] == -1)
