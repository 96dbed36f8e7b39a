"""Threshold-free open-set metrics: ROC / AUROC, FPR at a TPR, AUPR, OSCR.

Score direction (pytorch-ood convention): every function takes **outlier scores** —
larger means more likely unknown — for the known (in-distribution) samples and for the
unknown (open-set) samples separately. A sample is *accepted* as known at threshold
``t`` iff ``score <= t``. With a confidence such as max-softmax or reachability
(larger = known) pass its negation (see :mod:`oltr.scores`).

* TPR(t): fraction of known samples accepted; FPR(t): fraction of unknown samples
  accepted; CCR(t): fraction of known samples accepted *and* correctly classified.
* Ties are handled exactly: all samples with the same score are accepted together, and
  curves step diagonally through a tied group (AUROC counts a tie as 1/2).

All curves are computed in O(n log n) from one sort. A metric that needs samples of a
kind that is missing (no known or no unknown sample, or no sample at all) is ``nan``,
never an exception. Scores must be finite and real (``ValueError`` / ``TypeError``
naming the argument otherwise).
"""
from __future__ import annotations

import numpy as np

from oltr.metrics._arrays import as_flags, as_fraction, as_scores

__all__ = ["aupr", "auroc", "fpr_at_tpr", "oscr", "oscr_curve", "roc_curve", "threshold_at_tpr"]


def _accept_curve(
    known: np.ndarray, unknown: np.ndarray, known_weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds ascending, and at each the summed ``known_weight`` and the
    number of unknown samples with ``score <= threshold`` (all empty without samples)."""
    scores = np.concatenate([known, unknown])
    if scores.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    w_known = np.concatenate([known_weight, np.zeros(unknown.size)])
    w_unknown = np.concatenate([np.zeros(known.size), np.ones(unknown.size)])
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last index of each tie group
    return s[last], np.cumsum(w_known[order])[last], np.cumsum(w_unknown[order])[last]


def threshold_at_tpr(known_scores, tpr: float = 0.95) -> float:
    """Smallest threshold that accepts at least ``tpr`` of the known samples.

    Choose it on **validation** known samples (no unknowns needed): a sample is then
    rejected iff its outlier score ``> threshold``. E.g. for max-softmax,
    ``t = threshold_at_tpr(msp_score(val_logits))`` and reject where ``msp < -t``.

    Returns:
        The ``ceil(tpr · n)``-th smallest score.

    Raises:
        ValueError: ``known_scores`` is empty (no threshold exists), or ``tpr`` is not in
            ``(0, 1]`` (NaN included).
    """
    tpr = as_fraction(tpr, "tpr")
    s = np.sort(as_scores(known_scores, "known_scores"))
    if s.size == 0:
        raise ValueError("known_scores is empty")
    k = int(np.ceil(round(tpr * s.size, 9)))
    return float(s[max(k, 1) - 1])


def roc_curve(known_scores, unknown_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of known vs unknown: ``(fpr, tpr, thresholds)``, thresholds ascending.

    Point ``i`` accepts every sample with ``score <= thresholds[i]``; a leading point
    ``(0, 0)`` with threshold ``-inf`` is included. ``AUROC = trapz(tpr, fpr)``.
    Empty known or unknown sets give ``nan`` rates.
    """
    k = as_scores(known_scores, "known_scores")
    u = as_scores(unknown_scores, "unknown_scores")
    thr, acc_k, acc_u = _accept_curve(k, u, np.ones(k.size))
    tpr = np.concatenate([[0.0], acc_k / k.size]) if k.size else np.full(thr.size + 1, np.nan)
    fpr = np.concatenate([[0.0], acc_u / u.size]) if u.size else np.full(thr.size + 1, np.nan)
    return fpr, tpr, np.concatenate([[-np.inf], thr])


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def auroc(known_scores, unknown_scores) -> float:
    """Area under the ROC: P(unknown score > known score) + ½ P(equal).

    Equals ``sklearn.metrics.roc_auc_score`` with unknown as the positive class and the
    outlier score as its score. ``nan`` if either set is empty.
    """
    fpr, tpr, _ = roc_curve(known_scores, unknown_scores)
    if np.isnan(fpr[-1]) or np.isnan(tpr[-1]):
        return float("nan")
    return _area(fpr, tpr)


def fpr_at_tpr(known_scores, unknown_scores, tpr: float = 0.95) -> float:
    """Fraction of unknown samples accepted at :func:`threshold_at_tpr` of the known
    samples (FPR95 for ``tpr=0.95``, known = positive). ``nan`` if either set is empty."""
    tpr = as_fraction(tpr, "tpr")
    k = as_scores(known_scores, "known_scores")
    u = as_scores(unknown_scores, "unknown_scores")
    if k.size == 0 or u.size == 0:
        return float("nan")
    return float(np.mean(u <= threshold_at_tpr(k, tpr)))


def aupr(known_scores, unknown_scores, positive: str = "unknown") -> float:
    """Area under the precision-recall curve (average precision, step-wise).

    ``positive="unknown"`` (AUPR-Out): unknown samples are the positives, ranked by the
    outlier score; ``positive="known"`` (AUPR-In): known samples are the positives,
    ranked by the negated score. Equals ``sklearn.metrics.average_precision_score``.
    ``nan`` if either set is empty (without negatives the value is trivially 1).
    """
    k = as_scores(known_scores, "known_scores")
    u = as_scores(unknown_scores, "unknown_scores")
    if positive == "unknown":
        pos, neg = u, k
    elif positive == "known":
        pos, neg = -k, -u
    else:
        raise ValueError(f"positive must be 'unknown' or 'known', got {positive!r}")
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    # flag samples with score >= t, t descending == accept-curve of the negated scores
    _, tp, fp = _accept_curve(-pos, -neg, np.ones(pos.size))
    precision = tp / (tp + fp)
    recall = tp / pos.size
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def oscr_curve(
    known_scores, unknown_scores, known_correct
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open-set classification rate curve: ``(fpr, ccr, thresholds)``, thresholds
    ascending, with a leading ``(0, 0)`` point at ``-inf``.

    ``known_correct`` is a boolean ``(n_known,)``: the closed-set prediction of each
    known sample is right. At the last point ``ccr`` is the closed-set accuracy.
    """
    k = as_scores(known_scores, "known_scores")
    u = as_scores(unknown_scores, "unknown_scores")
    c = as_flags(known_correct, "known_correct")
    if c.shape != k.shape:
        raise ValueError(f"known_correct {c.shape} and known_scores {k.shape} differ in shape")
    thr, acc_c, acc_u = _accept_curve(k, u, c.astype(np.float64))
    ccr = np.concatenate([[0.0], acc_c / k.size]) if k.size else np.full(thr.size + 1, np.nan)
    fpr = np.concatenate([[0.0], acc_u / u.size]) if u.size else np.full(thr.size + 1, np.nan)
    return fpr, ccr, np.concatenate([[-np.inf], thr])


def oscr(known_scores, unknown_scores, known_correct) -> float:
    """Area under the CCR-vs-FPR curve (OSCR, Dhamija et al. 2018), tie-aware.

    With every known sample correct it equals :func:`auroc`. The public implementation
    (Vaze et al., ``compute_oscr``) uses an off-by-one between its CCR and FPR sums and no
    tie handling, so it can differ slightly from this exact value. ``nan`` if either set
    is empty.
    """
    fpr, ccr, _ = oscr_curve(known_scores, unknown_scores, known_correct)
    if np.isnan(fpr[-1]) or np.isnan(ccr[-1]):
        return float("nan")
    return _area(fpr, ccr)

