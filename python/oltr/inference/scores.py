"""Every outlier score of a model's outputs, each computed once (larger = more unknown).

* ``msp``: ``-max softmax(logits)``; ``max_logit``: ``-max logits``; ``energy``:
  ``-logsumexp(logits)`` (:mod:`oltr.scores.logits`);
* ``reachability``: ``-reach_scale / min_k ||f - c_k||``, taken from the reachability the
  forward pass computed (stage ``oltr``: the meta-embedding classifier's, against the memory;
  stage ``plain``: against the class means of the training features, see
  :class:`oltr.inference.ModelRunner`). Present only when the outputs carry it.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["LOGIT_SCORE_NAMES", "SCORE_NAMES", "outlier_scores", "reach_scale_of"]

#: Scores from the logits alone.
LOGIT_SCORE_NAMES = ("msp", "max_logit", "energy")
#: Every score, in report order (``reachability`` only when a memory / class means exist).
SCORE_NAMES = LOGIT_SCORE_NAMES + ("reachability",)


def reach_scale_of(model: Any) -> float:
    """The reachability scale of an :class:`oltr.OLTRModel` (:attr:`oltr.OLTRModel.reach_scale`:
    the classifier's in the ``oltr`` stage, :data:`oltr.memory.index.REACHABILITY_SCALE` in the
    plain stage, where it scales the reachability to the class means)."""
    return float(model.reach_scale)


def outlier_scores(logits: np.ndarray, reachability: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
    """``{name: float64 (N,)}`` for :data:`SCORE_NAMES`.

    Args:
        logits: float ``(N, K)``.
        reachability: float ``(N,)`` reachability of each sample (larger = nearer the memory),
            as :class:`oltr.inference.Outputs` carries it, or None (no ``reachability`` score).
    """
    from oltr.scores import energy_score, max_logit_score, msp_score

    logits = np.asarray(logits)
    scores = {
        "msp": np.asarray(msp_score(logits), dtype=np.float64),
        "max_logit": np.asarray(max_logit_score(logits), dtype=np.float64),
        "energy": np.asarray(energy_score(logits), dtype=np.float64),
    }
    if reachability is not None:
        reach = np.asarray(reachability, dtype=np.float64)
        if reach.shape != (logits.shape[0],):
            raise ValueError(f"reachability must have shape ({logits.shape[0]},), got {reach.shape}")
        scores["reachability"] = -reach
    return scores
