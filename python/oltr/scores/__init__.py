"""Open-set scores, all **outlier scores: larger = more likely unknown**.

Functions: :func:`msp_score`, :func:`max_logit_score`, :func:`energy_score`
(from logits), :func:`centroid_distance_score`, :func:`reachability_score` (from
features and centroids), :func:`score_from_logits` (by name). Detectors in the
pytorch-ood style: :class:`MaxSoftmax`, :class:`MaxLogit`, :class:`EnergyBased`,
:class:`NearestCentroid`, :class:`Reachability`, and detectors fitted on training features
(:class:`FeatureDetector`): :class:`KNN`, :class:`Mahalanobis`, :class:`RMD`, :class:`ViM`,
:class:`ReAct`.
"""
from __future__ import annotations

from oltr.scores._feature_base import FeatureDetector
from oltr.scores.centroids import centroid_distance_score, reachability_score
from oltr.scores.detectors import (
    Detector,
    EnergyBased,
    MaxLogit,
    MaxSoftmax,
    NearestCentroid,
    Reachability,
    class_means,
)
from oltr.scores.knn import KNN
from oltr.scores.logits import (
    LOGIT_SCORES,
    energy_score,
    max_logit_score,
    msp_score,
    score_from_logits,
)
from oltr.scores.mahalanobis import RMD, Mahalanobis
from oltr.scores.react import ReAct
from oltr.scores.vim import ViM

__all__ = [
    "Detector",
    "EnergyBased",
    "FeatureDetector",
    "KNN",
    "LOGIT_SCORES",
    "MaxLogit",
    "Mahalanobis",
    "MaxSoftmax",
    "NearestCentroid",
    "RMD",
    "ReAct",
    "Reachability",
    "ViM",
    "centroid_distance_score",
    "class_means",
    "energy_score",
    "max_logit_score",
    "msp_score",
    "reachability_score",
    "score_from_logits",
]
