"""``evaluate``: every closed-set, official open-set and modern open-set number at once.

It returns the one report schema of the project (``oltr.report/1``, described in
docs/report-schema.md): ``oltr eval --json``, the trainer's validation report (``best.pt``'s
``val_report``) and this function give the same nested keys.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from oltr.metrics._arrays import as_labels, as_scores
from oltr.metrics._logits import argmax_and_msp, per_row
from oltr.metrics.closed import macro_f1, shot_accuracy, top1_accuracy
from oltr.metrics.official import (
    OFFICIAL_OPEN_THRESHOLD,
    open_set_accuracy,
    open_set_f_measure,
    reject_by_score,
)
from oltr.metrics.open_set import (
    OPEN_SET_METRICS,
    open_set_metrics,
    open_set_metrics_by_group,
)

__all__ = ["GROUP_SUFFIX", "REPORT_SCHEMA", "Report", "evaluate", "flatten_report", "rejection_metrics"]

#: the ``schema`` value of every report
REPORT_SCHEMA = "oltr.report/1"
#: ``reject_thresholds`` / ``reject`` block names ending in this hold per-shot-group thresholds
GROUP_SUFFIX = "@groups"
_GROUPS = ("many", "medium", "few")


def rejection_metrics(
    preds, labels, train_counts, many_thr: int = 100, few_thr: int = 20, rule: str = "official"
) -> dict[str, Union[float, dict[str, float]]]:
    """Numbers of one open-set decision (``preds`` with ``-1`` = rejected), as the official
    ``eval`` reports them: ``f_measure``, ``f_measure_legacy``, ``open_set_accuracy``, and
    ``top1``, ``many``, ``medium``, ``few`` over the known samples **after** rejection (a
    rejected known sample counts as wrong), plus ``rejected_known`` (the fraction of known
    samples rejected) and ``rejected_known_groups`` (that fraction within the known samples of
    each shot group: the false rejection rate of many-, medium- and few-shot images). ``nan``
    where undefined."""
    p, y = as_labels(preds, "preds"), as_labels(labels, "labels")
    known = y != -1
    return {
        "f_measure": open_set_f_measure(p, y),
        "f_measure_legacy": open_set_f_measure(p, y, legacy=True),
        "open_set_accuracy": open_set_accuracy(p, y),
        "top1": top1_accuracy(p[known], y[known]),
        **shot_accuracy(p[known], y[known], train_counts, many_thr, few_thr, rule),
        "rejected_known": float(np.mean(p[known] == -1)) if known.any() else float("nan"),
        "rejected_known_groups": _rejected_by_group(p[known], y[known], train_counts, many_thr, few_thr, rule),
    }


def _rejected_by_group(preds: np.ndarray, labels: np.ndarray, train_counts, many_thr: int, few_thr: int,
                       rule: str) -> dict[str, float]:
    """Fraction of the known samples of each shot group (by true class) predicted ``-1``."""
    from oltr.data.shots import shot_groups

    groups = shot_groups(train_counts, many_thr, few_thr, rule)
    out = {}
    for name in _GROUPS:
        members = getattr(groups, name)[labels] if labels.size else np.zeros(0, bool)
        out[name] = float(np.mean(preds[members] == -1)) if members.any() else float("nan")
    return out


def _per_sample_threshold(threshold: Any, preds: np.ndarray, train_counts, groups: Mapping[str, Any],
                          what: str) -> Any:
    """``threshold`` as given (one number) or, for per-group thresholds ``{many, medium, few}``,
    the threshold of each sample's **predicted** class's group (``(N,)`` float64)."""
    if not isinstance(threshold, Mapping):
        return _finite(threshold, what)
    from oltr.data.shots import shot_groups

    if set(threshold) != set(_GROUPS):
        raise ValueError(f"{what} must be a number or a mapping with keys {list(_GROUPS)}; got {sorted(threshold)}")
    masks = shot_groups(train_counts, groups["many_thr"], groups["few_thr"], groups["rule"])
    per_class = np.empty(len(masks.many))
    for name in _GROUPS:
        per_class[getattr(masks, name)] = _finite(threshold[name], f"{what}[{name!r}]")
    return per_class[preds]


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return number


def _modern(score: np.ndarray, y: np.ndarray, correct: np.ndarray, counts: np.ndarray, tpr: float,
            groups: Mapping[str, Any]) -> dict[str, Any]:
    known = y != -1
    if known.all():  # no unknown sample: every open-set number is undefined
        nan = {m: float("nan") for m in OPEN_SET_METRICS}
        return {**nan, "groups": {g: dict(nan) for g in _GROUPS}}
    block: dict[str, Any] = dict(open_set_metrics(score[known], score[~known], correct, tpr))
    block["groups"] = open_set_metrics_by_group(score[known], y[known], score[~known], correct, counts, tpr, **groups)
    return block


def evaluate(
    logits,
    labels,
    train_counts,
    *,
    scores: Optional[Mapping[str, Any]] = None,
    logit_scores: Sequence[str] = ("msp", "max_logit", "energy"),
    open_threshold: float = OFFICIAL_OPEN_THRESHOLD,
    reject_thresholds: Optional[Mapping[str, Union[float, Mapping[str, float]]]] = None,
    tpr: float = 0.95,
    many_thr: int = 100,
    few_thr: int = 20,
    rule: str = "official",
    meta: Optional[Mapping[str, Any]] = None,
) -> Report:
    """Evaluate logits of known (label ``0..K-1``) and unknown (label ``-1``) samples.

    Args:
        logits: ``(N, K)`` logits of the test set, or of test ∪ open set.
        labels: ``(N,)`` labels, ``-1`` for open-set samples.
        train_counts: ``(K,)`` training images per class (defines the shot groups).
        scores: extra **outlier scores** (larger = more unknown), name → ``(N,)``, e.g.
            ``{"reachability": reachability_score(features, centroids)}``.
        logit_scores: logit scores computed here (names of :data:`oltr.scores.LOGIT_SCORES`).
        open_threshold: the official max-softmax threshold (0.1; strict ``<``).
        reject_thresholds: block name → outlier-score threshold chosen on validation
            data (:func:`~oltr.metrics.threshold_at_tpr`); each gives a ``reject[name]``
            block (reject where score ``> threshold``). The name is a score's, or
            ``"<score>@groups"`` with per-group thresholds ``{"many": t, "medium": t, "few": t}``
            applied by each sample's **predicted** class's shot group
            (:func:`oltr.inference.choose_group_thresholds`).
        tpr: TPR for ``fpr_at_tpr`` (FPR95 by default).
        many_thr, few_thr, rule: shot groups (official ≥100 / ≤20; ``rule="paper"``:
            >100 / <20).
        meta: extra entries of the report's ``meta`` block (where the numbers come from).

    Returns:
        A :class:`Report` (a ``dict``), ``nan`` where undefined (open-set numbers without
        unknown samples, an empty shot group)::

            schema       "oltr.report/1"
            num_known, num_unknown   int
            closed       {top1, macro_f1, many, medium, few}    argmax, known samples
            official     {threshold, f_measure, f_measure_legacy, open_set_accuracy, top1,
                          many, medium, few, rejected_known}    max softmax < threshold rejected
            reject       {score: {threshold, <the same keys>}}  score > threshold rejected
            modern       {score: {auroc, fpr_at_tpr, aupr_in, aupr_out, oscr,
                                  groups: {many|medium|few: {<the same five>}}}}
            meta         {tpr, many_thr, few_thr, shot_rule, ...}

        The flat keys of earlier versions (``"official.openset_acc"``, ``"msp.auroc"``,
        ``"msp.many.auroc"``, ``"n_known"``, ...) are still readable (``report[key]``, ``key in
        report``) and :func:`flatten_report` lists them.
    """
    from functools import partial

    from oltr.scores.logits import score_from_logits

    y = as_labels(labels, "labels")
    preds, msp = argmax_and_msp(logits)
    n = y.size
    if preds.size != n:
        raise ValueError(f"logits have {preds.size} rows, labels {n}")
    counts = np.asarray(train_counts)
    if y.max(initial=-1) >= counts.size:
        raise ValueError(f"labels go up to {y.max()}, but train_counts has {counts.size} classes")
    open_threshold = _finite(open_threshold, "open_threshold")
    tpr = _finite(tpr, "tpr")
    preds_open = preds.copy()
    preds_open[msp < open_threshold] = -1  # the official rule, as predict_open
    known = y != -1
    groups: dict[str, Any] = {"many_thr": many_thr, "few_thr": few_thr, "rule": rule}

    names = list(logit_scores)
    values = per_row(logits, [partial(score_from_logits, name) for name in names])
    all_scores: dict[str, np.ndarray] = {name: as_scores(v, name) for name, v in zip(names, values)}
    for name, s in (scores or {}).items():
        arr = as_scores(s, f"scores[{name!r}]")
        if arr.size != n:
            raise ValueError(f"scores[{name!r}] has {arr.size} values, labels {n}")
        all_scores[name] = arr
    reject: dict[str, Any] = {}
    for name, t in (reject_thresholds or {}).items():
        score_name = name[: -len(GROUP_SUFFIX)] if name.endswith(GROUP_SUFFIX) else name
        if score_name not in all_scores:
            raise ValueError(f"reject_thresholds names unknown score {score_name!r}; have {sorted(all_scores)}")
        if name.endswith(GROUP_SUFFIX) != isinstance(t, Mapping):
            raise ValueError(f"reject_thresholds[{name!r}]: per-group thresholds (a mapping) go with a name "
                             f"ending in {GROUP_SUFFIX!r}, one number with a score name")
        threshold = _per_sample_threshold(t, preds, counts, groups, f"reject_thresholds[{name!r}]")
        # s - t > 0 exactly when s > t (IEEE subtraction is zero only for equal operands)
        rejected = reject_by_score(preds, all_scores[score_name] - threshold, 0.0)
        shown = {g: float(v) for g, v in t.items()} if isinstance(t, Mapping) else threshold
        reject[name] = {"threshold": shown, **rejection_metrics(rejected, y, counts, **groups)}
    correct = preds[known] == y[known]
    return Report(
        schema=REPORT_SCHEMA,
        num_known=int(known.sum()),
        num_unknown=int((~known).sum()),
        closed={
            "top1": top1_accuracy(preds[known], y[known]),
            "macro_f1": macro_f1(preds[known], y[known]),
            **shot_accuracy(preds[known], y[known], counts, **groups),
        },
        official={"threshold": open_threshold, **rejection_metrics(preds_open, y, counts, **groups)},
        reject=reject,
        modern={name: _modern(s, y, correct, counts, tpr, groups) for name, s in all_scores.items()},
        meta={"tpr": tpr, "many_thr": int(many_thr), "few_thr": int(few_thr), "shot_rule": rule, **dict(meta or {})},
    )


_MISSING = object()
_RENAMED = {"openset_acc": "open_set_accuracy"}


def _legacy(report: Mapping[str, Any], key: str) -> Any:
    """The value of a flat key of the pre-``oltr.report/1`` ``evaluate``, or ``_MISSING``."""
    top = {"n_known": ("num_known",), "n_unknown": ("num_unknown",), "tpr": ("meta", "tpr")}
    parts = top.get(key)
    if parts is None:
        split = key.split(".")
        split[-1] = _RENAMED.get(split[-1], split[-1])
        if split[0] in ("closed", "official") and len(split) == 2 or split[0] == "reject" and len(split) == 3:
            parts = tuple(split)
        elif len(split) == 2:
            parts = ("modern", split[0], split[1])
        elif len(split) == 3 and split[1] in _GROUPS:
            parts = ("modern", split[0], "groups", split[1], split[2])
        else:
            return _MISSING
    value: Any = report
    for part in parts:
        if not isinstance(value, dict) or not dict.__contains__(value, part):
            return _MISSING
        value = dict.__getitem__(value, part)
    return _MISSING if isinstance(value, Mapping) else value


class Report(dict):
    """The nested report of :func:`evaluate` (a plain ``dict`` for JSON and equality) that also
    answers the flat keys of earlier versions (``report["official.openset_acc"]``)."""

    def __getitem__(self, key: Any) -> Any:
        if dict.__contains__(self, key) or not isinstance(key, str):
            return dict.__getitem__(self, key)
        value = _legacy(self, key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (isinstance(key, str) and _legacy(self, key) is not _MISSING)

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 - dict.get skips the flat keys


def _flat(report: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    yield "n_known", float(report["num_known"])
    yield "n_unknown", float(report["num_unknown"])
    yield "tpr", float(report["meta"]["tpr"])
    for block in ("closed", "official"):
        yield from _flat_block(block, report[block])
    for name, metrics in report["modern"].items():
        for k, v in metrics.items():
            if k != "groups":
                yield f"{name}.{k}", v
        for group, values in metrics["groups"].items():
            for k, v in values.items():
                yield f"{name}.{group}.{k}", v
    for name, metrics in report["reject"].items():
        yield from _flat_block(f"reject.{name}", metrics)


def _flat_block(prefix: str, block: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    for k, v in block.items():
        key = f"{prefix}.{'openset_acc' if k == 'open_set_accuracy' else k}"
        if isinstance(v, Mapping):
            for sub, value in v.items():
                yield f"{key}.{sub}", value
        else:
            yield key, v


def flatten_report(report: Mapping[str, Any]) -> dict[str, float]:
    """The flat ``{"closed.top1": ..., "official.openset_acc": ..., "msp.many.auroc": ...}``
    dict earlier versions of :func:`evaluate` returned, from a report (``oltr.report/1``)."""
    return {k: float(v) for k, v in _flat(report)}
