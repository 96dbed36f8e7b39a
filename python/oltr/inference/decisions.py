"""Decisions: which samples are unknown, by a rule, an outlier score and a threshold.

Every rule has the same form — a sample is **unknown when its outlier score is above the
threshold** (scores: larger = more unknown, :mod:`oltr.inference.scores`):

* ``"val"``: the threshold of ``score`` chosen on the known validation samples at training
  time so that ``eval.val_keep`` of them (default 95 %) are kept (:func:`choose_thresholds`),
  stored in the checkpoint as ``rejection``;
* ``"official"``: the official fixed rule, max softmax ``< eval.open_threshold`` (0.1), which
  is the ``msp`` outlier score ``> -open_threshold``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

__all__ = ["DEFAULT_SCORE", "RULES", "Rejection", "choose_group_thresholds", "choose_thresholds"]

RULES = ("val", "official")
#: the score a validation-chosen rejection uses unless told otherwise
DEFAULT_SCORE = "msp"


def choose_thresholds(scores: Mapping[str, np.ndarray], keep: float) -> dict[str, float]:
    """Per score, the smallest threshold accepting ``keep`` of the (known) validation samples."""
    from oltr.metrics.ranking import threshold_at_tpr

    return {name: float(threshold_at_tpr(values, keep)) for name, values in scores.items()}


@dataclass(frozen=True)
class Rejection:
    """A decision rule: unknown where ``scores[score] > threshold``.

    Attributes:
        rule: ``"val"`` or ``"official"`` (see the module docstring).
        score: the outlier score it thresholds (``"msp"`` for ``"official"``).
        threshold: the outlier-score threshold (finite).
    """

    rule: str
    score: str
    threshold: float

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}; got {self.rule!r}")
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(float(self.threshold)):
            raise ValueError(f"rejection threshold must be a finite number; got {self.threshold!r}")

    def unknown(self, scores: Mapping[str, np.ndarray]) -> np.ndarray:
        """bool ``(N,)``: the samples this rule calls unknown."""
        if self.score not in scores:
            raise ValueError(f"the rejection uses score {self.score!r}, but only {sorted(scores)} exist "
                             "(reachability needs a memory or class means)")
        return np.asarray(scores[self.score]) > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def official(cls, open_threshold: float) -> Rejection:
        """The official rule at max-softmax threshold ``open_threshold``."""
        return cls("official", "msp", -float(open_threshold))

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], rule: Optional[str] = None,
                        score: Optional[str] = None) -> Rejection:
        """The rejection stored in a model checkpoint, or another one it allows.

        Args:
            checkpoint: a :func:`oltr.train.load_model_checkpoint` dict. Its ``rejection``
                (``{"rule", "score", "threshold"}``, written at training time) is the default;
                checkpoints written before it existed use the validation-chosen ``msp``
                threshold in ``thresholds``.
            rule: ``"val"`` or ``"official"`` to override the stored rule.
            score: with ``rule="val"``, another score whose validation threshold is stored.

        Raises:
            ValueError: unknown rule, or no stored threshold for ``score``.
        """
        stored = checkpoint.get("rejection")
        thresholds = checkpoint["thresholds"]
        if rule is None and score is None and stored:
            return cls(str(stored["rule"]), str(stored["score"]), float(stored["threshold"]))
        rule = rule or (str(stored["rule"]) if stored else "val")
        if rule == "official":
            if score not in (None, "msp"):
                raise ValueError(f"the official rule thresholds the max softmax (msp), not {score!r}")
            return cls.official(float(thresholds["open_threshold"]))
        if rule != "val":
            raise ValueError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
        score = score or (str(stored["score"]) if stored else DEFAULT_SCORE)
        if score not in thresholds or score == "open_threshold" or isinstance(thresholds[score], Mapping):
            have = sorted(k for k, v in thresholds.items() if k != "open_threshold" and not isinstance(v, Mapping))
            raise ValueError(f"the checkpoint stores no validation threshold for score {score!r} (has {have})")
        return cls("val", score, float(thresholds[score]))


def choose_group_thresholds(
    scores: Mapping[str, np.ndarray], closed_preds: np.ndarray, train_counts, keep: float,
    many_thr: int = 100, few_thr: int = 20, rule: str = "official",
) -> dict[str, dict[str, float]]:
    """Per score, one threshold per shot group, each keeping ``keep`` of the known validation
    samples **predicted** into that group (the group is of the predicted class, since the true
    class of a test sample is unknown). A group no validation sample is predicted into takes
    the score's global threshold.

    Returns ``{score: {"many": t, "medium": t, "few": t}}``; pass it to
    :func:`oltr.metrics.evaluate` as ``reject_thresholds={f"{score}@groups": ...}``.
    """
    from oltr.data.shots import shot_groups

    preds = np.asarray(closed_preds, dtype=np.int64)
    masks = shot_groups(train_counts, many_thr, few_thr, rule)
    overall = choose_thresholds(scores, keep)
    out: dict[str, dict[str, float]] = {}
    for name, values in scores.items():
        values = np.asarray(values)
        if values.shape != preds.shape:
            raise ValueError(f"scores[{name!r}] has shape {values.shape}, closed_preds {preds.shape}")
        out[name] = {}
        for group in ("many", "medium", "few"):
            members = getattr(masks, group)[preds]
            out[name][group] = (choose_thresholds({name: values[members]}, keep)[name] if members.any()
                                else overall[name])
    return out
