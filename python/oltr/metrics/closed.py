"""Closed-set metrics: top-1, macro-F1, per-class and many/medium/few-shot accuracy.

Predictions and labels are 1-D integer arrays (numpy or torch). An undefined value (an
empty input, an empty shot group) is ``nan``, never an exception or a warning.
"""
from __future__ import annotations

import numpy as np

from oltr.data.shots import shot_groups
from oltr.metrics._arrays import as_counts, as_labels, nan_mean

__all__ = ["macro_f1", "per_class_accuracy", "shot_accuracy", "top1_accuracy"]


def _pair(preds, labels) -> tuple[np.ndarray, np.ndarray]:
    p, y = as_labels(preds, "preds"), as_labels(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"preds {p.shape} and labels {y.shape} differ in shape")
    return p, y


def top1_accuracy(preds, labels) -> float:
    """``mean(preds == labels)`` (official ``mic_acc_cal``); ``nan`` for no samples."""
    p, y = _pair(preds, labels)
    return nan_mean(p == y)


def macro_f1(preds, labels) -> float:
    """Macro-averaged F1 over the union of classes in ``labels`` and ``preds``.

    Equals ``sklearn.metrics.f1_score(labels, preds, average="macro", zero_division=0)``
    — the official ``F_measure(openset=False)`` — without sklearn's warnings.
    """
    p, y = _pair(preds, labels)
    classes = np.union1d(p, y)
    if classes.size == 0:
        return float("nan")
    k = classes.size
    ip, iy = np.searchsorted(classes, p), np.searchsorted(classes, y)
    tp = np.bincount(iy[p == y], minlength=k).astype(np.float64)
    denom = (np.bincount(ip, minlength=k) + np.bincount(iy, minlength=k)).astype(np.float64)
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def per_class_accuracy(preds, labels, num_classes: int) -> np.ndarray:
    """``float64 (num_classes,)`` accuracy of each class; ``nan`` where a class has no
    sample. Rows with label ``-1`` are ignored."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
    p, y = _pair(preds, labels)
    known = y >= 0
    p, y = p[known], y[known]
    if y.size and y.max() >= num_classes:
        raise ValueError(f"labels go up to {y.max()}, beyond num_classes={num_classes}")
    total = np.bincount(y, minlength=num_classes).astype(np.float64)
    correct = np.bincount(y[p == y], minlength=num_classes).astype(np.float64)
    return np.divide(correct, total, out=np.full(num_classes, np.nan), where=total > 0)


def shot_accuracy(
    preds,
    labels,
    train_counts,
    many_thr: int = 100,
    few_thr: int = 20,
    rule: str = "official",
) -> dict[str, float]:
    """Mean per-class accuracy of the many / medium / few-shot groups (``utils.shot_acc``).

    As the official code: only classes present in ``labels`` count; each class's
    accuracy is correct / test samples; a group's value is the mean over its classes
    (``nan`` when no test class falls in it). Rows labelled ``-1`` are ignored, so in
    open-set mode pass the predictions *after* rejection to get the official open
    many/medium/few.

    Args:
        train_counts: ``(K,)`` training images per class.
        many_thr, few_thr, rule: see :func:`oltr.data.shot_groups` (official ≥ / ≤,
            paper > / <).

    Returns:
        ``{"many": .., "medium": .., "few": ..}``.

    Raises:
        ValueError: ``train_counts`` shorter than the classes in ``labels``, negative, or
            not whole numbers (``TypeError`` if complex).
    """
    counts = as_counts(train_counts, "train_counts")
    top = as_labels(labels, "labels").max(initial=-1)
    if top >= counts.size:
        raise ValueError(f"train_counts has {counts.size} entries but labels go up to {top}: "
                         "give one train count per class")
    groups = shot_groups(counts, many_thr, few_thr, rule)
    acc = per_class_accuracy(preds, labels, counts.size)
    present = ~np.isnan(acc)
    return {name: nan_mean(acc[mask & present]) for name, mask in groups._asdict().items()}
