"""The report of a model's outputs: :func:`oltr.metrics.evaluate` fed with the outputs' scores.

The schema (``oltr.report/1``) is documented in docs/report-schema.md and in
:func:`oltr.metrics.evaluate`. Here the outputs' outlier scores are computed once
(:func:`oltr.inference.outlier_scores`, reachability from the forward pass) and the
thresholds chosen on validation become the ``reject`` blocks.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from oltr.inference.outputs import Outputs
from oltr.metrics.evaluate import GROUP_SUFFIX, REPORT_SCHEMA, Report

__all__ = ["REPORT_SCHEMA", "evaluate_outputs", "json_ready", "shot_options"]


def shot_options(eval_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``many_thr``, ``few_thr``, ``rule`` of a config's ``eval`` section."""
    return {"many_thr": int(eval_cfg["many_shot"]), "few_thr": int(eval_cfg["few_shot"]),
            "rule": "paper" if eval_cfg["paper_groups"] else "official"}


def evaluate_outputs(
    outputs: Outputs, train_counts: Union[Sequence[int], np.ndarray], eval_cfg: Mapping[str, Any],
    thresholds: Optional[Mapping[str, Any]] = None, meta: Optional[Mapping[str, Any]] = None,
) -> Report:
    """The report (``oltr.report/1``) of ``outputs``.

    Args:
        outputs: logits, features, labels (``-1`` = unknown) and reachability (or None).
        train_counts: ``(K,)`` training images per class (shot groups).
        eval_cfg: the config's ``eval`` section (``open_threshold``, shot rule).
        thresholds: validation-chosen outlier-score thresholds (``{"msp": t, ...}``, and
            per-shot-group ones ``{"msp@groups": {"many": t, "medium": t, "few": t}}``; the
            ``open_threshold`` entry and scores the outputs lack are skipped); each gives a
            ``reject`` block.
        meta: entries of the report's ``meta`` block.
    """
    from oltr.inference.scores import outlier_scores
    from oltr.metrics.evaluate import evaluate

    scores = outlier_scores(outputs.logits, outputs.reachability)
    reject: dict[str, Any] = {}
    for name, value in (thresholds or {}).items():
        if name in scores:
            reject[name] = float(value)
        elif name.endswith(GROUP_SUFFIX) and name[: -len(GROUP_SUFFIX)] in scores:
            reject[name] = {group: float(t) for group, t in value.items()}
    return evaluate(outputs.logits, outputs.labels, train_counts, scores=scores, logit_scores=(),
                    open_threshold=float(eval_cfg["open_threshold"]), reject_thresholds=reject,
                    **shot_options(eval_cfg), meta=meta)


def json_ready(value: Any) -> Any:
    """``value`` with NaN/inf floats as ``None`` and numpy/torch scalars and arrays as Python
    numbers and lists, so ``json.dumps`` writes strict JSON (an empty shot group is ``null``)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist"):
        return json_ready(value.tolist())
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    return value
