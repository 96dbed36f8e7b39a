"""Tail-aware rejection: false rejection rate per shot group, per-group validation thresholds."""
from __future__ import annotations

import numpy as np
import pytest

from oltr.inference import choose_group_thresholds, choose_thresholds
from oltr.metrics import evaluate
from oltr.metrics.evaluate import flatten_report, rejection_metrics

COUNTS = np.array([200, 150, 50, 40, 10, 5])  # many: 0, 1 | medium: 2, 3 | few: 4, 5


def test_rejected_known_groups_is_the_false_rejection_rate_of_each_group():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, -1, -1])
    preds = np.array([0, -1, 1, 1, -1, -1, 3, 2, -1, 4, -1, -1, -1, 2])
    m = rejection_metrics(preds, labels, COUNTS)
    # many: 1 of 4 rejected; medium: 2 of 4; few: 3 of 4
    assert m["rejected_known_groups"] == {"many": 0.25, "medium": 0.5, "few": 0.75}
    assert m["rejected_known"] == pytest.approx(6 / 12)
    only_many = rejection_metrics(preds[:4], labels[:4], COUNTS)["rejected_known_groups"]
    assert only_many["many"] == 0.25 and np.isnan(only_many["medium"]) and np.isnan(only_many["few"])
    empty = rejection_metrics(np.array([-1]), np.array([-1]), COUNTS)["rejected_known_groups"]
    assert all(np.isnan(v) for v in empty.values())


def _tail_scores(rng, n=600):
    """Known samples whose outlier scores run higher for tail classes (as MSP does)."""
    labels = rng.integers(0, 6, n)
    shift = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])[labels]
    score = rng.standard_normal(n) + shift
    logits = np.eye(6)[labels] * 5.0  # argmax = the true class
    return logits, labels, score


def test_per_group_thresholds_keep_the_same_share_of_every_group(rng):
    logits, labels, score = _tail_scores(rng)
    keep = 0.9
    groups = choose_group_thresholds({"s": score}, logits.argmax(1), COUNTS, keep)["s"]
    assert groups["many"] < groups["medium"] < groups["few"]
    one = choose_thresholds({"s": score}, keep)["s"]
    report = evaluate(logits, labels, COUNTS, scores={"s": score}, logit_scores=(),
                      reject_thresholds={"s": one, "s@groups": groups})
    global_frr = report["reject"]["s"]["rejected_known_groups"]
    group_frr = report["reject"]["s@groups"]["rejected_known_groups"]
    # one threshold rejects the tail far more often; per-group thresholds keep ~10 % of each out
    assert global_frr["few"] > 0.2 and global_frr["many"] < 0.03
    for value in group_frr.values():
        assert value == pytest.approx(1 - keep, abs=0.02)
    assert report["reject"]["s@groups"]["threshold"] == groups
    flat = flatten_report(report)
    assert flat["reject.s@groups.threshold.few"] == groups["few"]
    assert flat["reject.s@groups.rejected_known_groups.many"] == group_frr["many"]


def test_a_group_nobody_is_predicted_into_takes_the_global_threshold(rng):
    logits, labels, score = _tail_scores(rng)
    many_only = np.where(logits.argmax(1) < 2, logits.argmax(1), 0)
    out = choose_group_thresholds({"s": score}, many_only, COUNTS, 0.9)["s"]
    assert out["medium"] == out["few"] == choose_thresholds({"s": score}, 0.9)["s"]


def test_per_group_threshold_mappings_are_checked(rng):
    logits, labels, score = _tail_scores(rng, 30)
    kw = {"scores": {"s": score}, "logit_scores": ()}
    with pytest.raises(ValueError, match="keys"):
        evaluate(logits, labels, COUNTS, reject_thresholds={"s@groups": {"many": 1.0}}, **kw)
    with pytest.raises(ValueError, match="finite"):
        evaluate(logits, labels, COUNTS, reject_thresholds={"s@groups": {"many": 1.0, "medium": float("nan"),
                                                                         "few": 0.0}}, **kw)
    with pytest.raises(ValueError, match="per-group thresholds"):
        evaluate(logits, labels, COUNTS, reject_thresholds={"s": {"many": 1, "medium": 1, "few": 1}}, **kw)
    with pytest.raises(ValueError, match="per-group thresholds"):
        evaluate(logits, labels, COUNTS, reject_thresholds={"s@groups": 1.0}, **kw)
    with pytest.raises(ValueError, match="unknown score 'x'"):
        evaluate(logits, labels, COUNTS, reject_thresholds={"x@groups": {"many": 1, "medium": 1, "few": 1}}, **kw)
