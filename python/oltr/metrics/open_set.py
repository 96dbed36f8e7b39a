"""All threshold-free open-set metrics at once, overall and per shot group."""
from __future__ import annotations

from oltr.data.shots import shot_groups
from oltr.metrics._arrays import as_counts, as_flags, as_labels, as_scores
from oltr.metrics.ranking import aupr, auroc, fpr_at_tpr, oscr

__all__ = ["OPEN_SET_METRICS", "open_set_metrics", "open_set_metrics_by_group"]

OPEN_SET_METRICS = ("auroc", "fpr_at_tpr", "aupr_in", "aupr_out", "oscr")


def open_set_metrics(known_scores, unknown_scores, known_correct, tpr: float = 0.95) -> dict[str, float]:
    """``{"auroc", "fpr_at_tpr", "aupr_in", "aupr_out", "oscr"}`` for outlier scores
    (larger = more unknown) of known and unknown samples; ``known_correct`` is the
    boolean closed-set correctness of each known sample (for OSCR). See
    :mod:`oltr.metrics.ranking` for the definitions; missing sets give ``nan``."""
    return {
        "auroc": auroc(known_scores, unknown_scores),
        "fpr_at_tpr": fpr_at_tpr(known_scores, unknown_scores, tpr),
        "aupr_in": aupr(known_scores, unknown_scores, positive="known"),
        "aupr_out": aupr(known_scores, unknown_scores, positive="unknown"),
        "oscr": oscr(known_scores, unknown_scores, known_correct),
    }


def open_set_metrics_by_group(
    known_scores,
    known_labels,
    unknown_scores,
    known_correct,
    train_counts,
    tpr: float = 0.95,
    many_thr: int = 100,
    few_thr: int = 20,
    rule: str = "official",
) -> dict[str, dict[str, float]]:
    """:func:`open_set_metrics` of each shot group: the known samples whose class is in
    the group against **all** unknown samples.

    Returns:
        ``{"many": {...}, "medium": {...}, "few": {...}}``; a group without test
        samples has ``nan`` everywhere.

    Raises:
        ValueError: shapes differ; ``known_labels`` outside ``[0, len(train_counts))``
            (``train_counts`` shorter than the number of classes, or an unknown ``-1``);
            ``train_counts`` negative or not whole numbers.
    """
    k = as_scores(known_scores, "known_scores")
    y = as_labels(known_labels, "known_labels")
    c = as_flags(known_correct, "known_correct")
    if not (k.shape == y.shape == c.shape):
        raise ValueError(
            f"known_scores {k.shape}, known_labels {y.shape} and known_correct {c.shape} "
            "must have the same shape"
        )
    counts = as_counts(train_counts, "train_counts")
    if y.size and y.min() < 0:
        raise ValueError("known_labels must be >= 0 (known samples only; pass unknowns as unknown_scores)")
    if y.size and y.max() >= counts.size:
        raise ValueError(f"train_counts has {counts.size} entries but known_labels go up to {y.max()}: "
                         "give one train count per class")
    groups = shot_groups(counts, many_thr, few_thr, rule)
    out = {}
    for name, mask in groups._asdict().items():
        rows = mask[y]
        out[name] = open_set_metrics(k[rows], unknown_scores, c[rows], tpr)
    return out
