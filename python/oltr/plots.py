"""PNG plots of long-tailed and open-set results (matplotlib Agg, without pyplot).

Each function writes one PNG to ``path`` (parent folders are created) and returns the
path. Score arguments are outlier scores (larger = more unknown), as in
:mod:`oltr.metrics`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike

from oltr.data.shots import shot_groups
from oltr.metrics.ranking import auroc, roc_curve

__all__ = ["plot_per_class_accuracy", "plot_roc", "plot_score_histogram"]

_GROUP_COLOURS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}


def _figure():
    # A bare Figure renders with Agg and never touches pyplot's global backend.
    from matplotlib.figure import Figure

    return Figure(figsize=(6.0, 4.0), dpi=100)


def _save(fig, path: str | os.PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


def plot_per_class_accuracy(
    per_class_acc: Mapping[str, ArrayLike] | ArrayLike,
    train_counts: ArrayLike,
    path: str | os.PathLike,
    class_names: Optional[Sequence[str]] = None,
    many_thr: int = 100,
    few_thr: int = 20,
    rule: str = "official",
    title: str = "Per-class accuracy vs training images",
) -> Path:
    """Accuracy of each class against its training count (log x axis).

    Args:
        per_class_acc: ``(K,)`` accuracies (e.g. :func:`oltr.metrics.per_class_accuracy`),
            or name → ``(K,)`` to compare models (one marker style each).
        train_counts: ``(K,)`` training images per class; the many / few thresholds are
            drawn as dashed lines and points coloured by shot group.
        class_names: optional labels written beside the points.
    """
    series = dict(per_class_acc) if isinstance(per_class_acc, Mapping) else {"": per_class_acc}
    counts = np.asarray(train_counts, dtype=np.float64)
    groups = shot_groups(counts, many_thr, few_thr, rule)
    colours = np.empty(counts.size, dtype=object)
    for name, mask in groups._asdict().items():
        colours[mask] = _GROUP_COLOURS[name]
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for (label, acc), marker in zip(series.items(), "os^Dv<>p*"):
        values = np.asarray(acc, dtype=np.float64)
        if values.shape != counts.shape:
            raise ValueError(f"per-class accuracy {label!r} has shape {values.shape}, expected {counts.shape}")
        ax.scatter(np.maximum(counts, 1), values, c=list(colours), marker=marker,
                   edgecolors="black", linewidths=0.5)
    if class_names is not None:
        first = np.asarray(next(iter(series.values())), dtype=np.float64)
        for x, y, name in zip(np.maximum(counts, 1), first, class_names):
            if np.isfinite(y):
                ax.annotate(str(name), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for thr in (many_thr, few_thr):
        ax.axvline(thr, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training images of the class")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], linestyle="", marker=m, markerfacecolor="lightgrey",
               markeredgecolor="black", label=label)
        for label, m in zip(series, "os^Dv<>p*") if label
    ] + [
        Line2D([], [], linestyle="", marker="o", color=c, label=f"{g}-shot")
        for g, c in _GROUP_COLOURS.items()
    ]
    ax.legend(handles=handles, loc="best", fontsize=8)
    return _save(fig, path)


def plot_roc(
    scores: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | os.PathLike,
    title: str = "Known vs unknown ROC",
) -> Path:
    """ROC curves, one per score: name → ``(known_scores, unknown_scores)``.

    x = fraction of unknown samples accepted, y = fraction of known samples accepted
    (:func:`oltr.metrics.roc_curve`); the legend gives each AUROC.
    """
    if not scores:
        raise ValueError("scores is empty: give at least one name -> (known, unknown)")
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for name, (known, unknown) in scores.items():
        fpr, tpr, _ = roc_curve(known, unknown)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(known, unknown):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("unknown samples accepted (FPR)")
    ax.set_ylabel("known samples accepted (TPR)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_score_histogram(
    known_scores: ArrayLike,
    unknown_scores: ArrayLike,
    path: str | os.PathLike,
    score_name: str = "outlier score",
    threshold: Optional[float] = None,
    bins: int = 40,
    title: Optional[str] = None,
) -> Path:
    """Overlaid density histograms of a score for known and unknown samples; an optional
    rejection ``threshold`` is drawn as a vertical line."""
    k = np.asarray(known_scores, dtype=np.float64)
    u = np.asarray(unknown_scores, dtype=np.float64)
    both = np.concatenate([k, u])
    if both.size == 0:
        raise ValueError("no scores to plot")
    lo, hi = float(both.min()), float(both.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    if k.size:
        ax.hist(k, bins=edges, density=True, alpha=0.55, label=f"known (n={k.size})")
    if u.size:
        ax.hist(u, bins=edges, density=True, alpha=0.55, label=f"unknown (n={u.size})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.0, label="threshold")
    ax.set_xlabel(f"{score_name} (larger = more unknown)")
    ax.set_ylabel("density")
    ax.set_title(title or f"{score_name}: known vs unknown")
    ax.legend(fontsize=8)
    return _save(fig, path)
