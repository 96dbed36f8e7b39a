"""A method's report: its outlier scores (the inference path's logit and reachability scores,
plus the feature detectors fitted on its training features) fed to the one report function,
:func:`oltr.metrics.evaluate` (``oltr.report/1``), with thresholds chosen on validation."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import numpy as np

from oltr.compare.methods import MethodOutputs
from oltr.inference.outputs import Outputs

__all__ = ["FEATURE_DETECTORS", "fit_detectors", "method_report", "method_scores"]

#: detectors fitted on training features (the others come from the logits / reachability)
FEATURE_DETECTORS = ("knn", "mahalanobis", "rmd", "vim", "react")

Scorer = Callable[[np.ndarray], np.ndarray]


def fit_detectors(names: Sequence[str], method: MethodOutputs, knn_k: int = 50,
                  vim_dim: Optional[int] = None) -> dict[str, Optional[Scorer]]:
    """``{name: features (M, D) -> float64 (M,) outlier scores}`` for the feature detectors in
    ``names``, fitted on ``method.train``; None for ViM / ReAct when the method has no linear head.

    Raises:
        ValueError: ``knn_k`` above the number of training samples (naming ``knn_k``).
    """
    from oltr.scores.knn import KNN
    from oltr.scores.mahalanobis import RMD, Mahalanobis
    from oltr.scores.react import ReAct
    from oltr.scores.vim import ViM

    feats, labels = method.train.features, method.train.labels
    fitted: dict[str, Optional[Scorer]] = {}
    for name in names:
        if name not in FEATURE_DETECTORS:
            continue
        if name == "knn":
            if knn_k > feats.shape[0]:
                raise ValueError(f"knn_k = {knn_k} is more than the {feats.shape[0]} training samples")
            detector: Any = KNN(knn_k).fit(feats)
        elif name == "mahalanobis":
            detector = Mahalanobis().fit(feats, labels)
        elif name == "rmd":
            detector = RMD().fit(feats, labels)
        elif method.head is None:
            fitted[name] = None
            continue
        elif name == "vim":
            dim = vim_dim if vim_dim is not None else max(1, feats.shape[1] // 2)
            detector = ViM(dim, head=method.head).fit(feats)
        else:
            detector = ReAct(head=method.head).fit(feats)
        fitted[name] = detector.predict
    return fitted


def method_scores(outputs: Outputs, detectors: Mapping[str, Optional[Scorer]]) -> dict[str, np.ndarray]:
    """Every outlier score of ``outputs`` (larger = more unknown): ``msp``, ``max_logit``,
    ``energy`` and ``reachability`` from :func:`oltr.inference.outlier_scores`, and each fitted
    feature detector's."""
    from oltr.inference.scores import outlier_scores

    scores = outlier_scores(outputs.logits, outputs.reachability)
    for name, predict in detectors.items():
        if predict is not None:
            scores[name] = np.asarray(predict(outputs.features), dtype=np.float64)
    return scores


def method_report(method: MethodOutputs, train_counts: Sequence[int], eval_cfg: Mapping[str, Any],
                  detectors: Mapping[str, Optional[Scorer]], meta: Optional[Mapping[str, Any]] = None):
    """The report (``oltr.report/1``) of ``method.test``: every score's threshold keeps
    ``eval.val_keep`` of the known validation samples (``reject`` blocks; ``reject.msp`` is
    the open F at a validation threshold), the ``modern`` blocks give AUROC / FPR95 overall
    and per shot group."""
    from oltr.inference.decisions import choose_thresholds
    from oltr.inference.report import shot_options
    from oltr.metrics.evaluate import evaluate

    val_scores = method_scores(method.val, detectors)
    known = method.val.labels != -1
    thresholds = choose_thresholds({k: v[known] for k, v in val_scores.items()}, float(eval_cfg["val_keep"]))
    test_scores = method_scores(method.test, detectors)
    return evaluate(method.test.logits, method.test.labels, np.asarray(train_counts), scores=test_scores,
                    logit_scores=(), open_threshold=float(eval_cfg["open_threshold"]),
                    reject_thresholds=thresholds, **shot_options(eval_cfg),
                    meta={"thresholds": thresholds, **dict(method.detail), **dict(meta or {})})
