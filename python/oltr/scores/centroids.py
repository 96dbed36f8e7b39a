"""Outlier scores from features and class centroids (the OLTR memory).

* :func:`centroid_distance_score`: ``min_k ‖f − c_k‖₂`` — already larger for outliers.
* :func:`reachability_score`: ``-reachability = -scale / max(min_k ‖f − c_k‖₂, eps)``.
  OLTR's reachability (``MetaEmbeddingClassifier``, scale 10) is larger for inliers, so
  its sign is flipped. It ranks samples exactly like the distance (a monotone map), so
  both give the same AUROC / OSCR; the negated reachability is kept because it is the
  quantity the OLTR model computes.

Distances come from :mod:`oltr.memory` (exact L2; Rust, FAISS or torch backend).
Input: features ``(N, D)`` and centroids ``(K, D)``, real float32/float64, numpy or CPU
torch (complex raises ``TypeError``); output ``(N,)`` float32 of the features' kind.
"""
from __future__ import annotations

from oltr.memory.index import REACHABILITY_SCALE
from oltr.scores._tensor import real_input

__all__ = ["centroid_distance_score", "reachability_score"]


def centroid_distance_score(features, centroids, backend: str = "auto"):
    """Distance to the nearest centroid, ``(N,)``; larger = more unknown."""
    from oltr.memory import nearest_centroids

    features, centroids = real_input(features, "features"), real_input(centroids, "centroids")
    dist, _ = nearest_centroids(features, centroids, k=1, backend=backend)
    return dist[:, 0]


def reachability_score(features, centroids, scale: float = REACHABILITY_SCALE, backend: str = "auto"):
    """``-reachability`` (``-scale / nearest distance``), ``(N,)``; larger = more unknown."""
    from oltr.memory import reachability

    features, centroids = real_input(features, "features"), real_input(centroids, "centroids")
    return -reachability(features, centroids, scale=scale, backend=backend)
