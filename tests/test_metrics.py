"""Metrics on hand-computed cases, edge cases and O(n²) references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from oltr.metrics import (
    OPEN_SET_METRICS,
    aupr,
    auroc,
    evaluate,
    flatten_report,
    fpr_at_tpr,
    macro_f1,
    open_set_accuracy,
    open_set_f_measure,
    open_set_metrics,
    open_set_metrics_by_group,
    oscr,
    oscr_curve,
    per_class_accuracy,
    predict_open,
    reject_by_score,
    roc_curve,
    shot_accuracy,
    threshold_at_tpr,
    top1_accuracy,
)
from oltr.scores import msp_score

# ---------- O(n²) references written from the definitions ----------

def _auroc_pairs(known, unknown):
    total = 0.0
    for k in known:
        for u in unknown:
            total += 1.0 if u > k else 0.5 if u == k else 0.0
    return total / (len(known) * len(unknown))


def _oscr_pairs(known, unknown, correct):
    """OSCR as a pair count: a correct known sample accepted while an unknown is rejected."""
    total = 0.0
    for k, c in zip(known, correct):
        if c:
            for u in unknown:
                total += 1.0 if u > k else 0.5 if u == k else 0.0
    return total / (len(known) * len(unknown))


def _oscr_sweep(known, unknown, correct):
    """OSCR by sweeping every threshold and integrating with the trapezoid rule."""
    pts = [(0.0, 0.0)]
    for t in sorted(set(known) | set(unknown)):
        ccr = sum(1 for k, c in zip(known, correct) if c and k <= t) / len(known)
        fpr = sum(1 for u in unknown if u <= t) / len(unknown)
        pts.append((fpr, ccr))
    return sum((x1 - x0) * (y1 + y0) / 2 for (x0, y0), (x1, y1) in zip(pts, pts[1:]))


tied_scores = st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(known=tied_scores, unknown=tied_scores, data=st.data())
def test_ranking_metrics_match_quadratic_references_with_ties(known, unknown, data):
    correct = data.draw(st.lists(st.booleans(), min_size=len(known), max_size=len(known)))
    assert auroc(known, unknown) == pytest.approx(_auroc_pairs(known, unknown), abs=1e-12)
    ref = _oscr_pairs(known, unknown, correct)
    assert oscr(known, unknown, correct) == pytest.approx(ref, abs=1e-12)
    assert _oscr_sweep(known, unknown, correct) == pytest.approx(ref, abs=1e-12)


def test_ranking_matches_sklearn_continuous(rng):
    k = rng.normal(size=300)
    u = rng.normal(1.0, size=120)
    y = np.r_[np.zeros(300), np.ones(120)]
    s = np.r_[k, u]
    assert auroc(k, u) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr(k, u) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert aupr(k, u, positive="known") == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    ki, ui = np.round(k), np.round(u)  # with ties
    assert aupr(ki, ui) == pytest.approx(average_precision_score(y, np.r_[ki, ui]), abs=1e-12)


def test_oscr_with_all_correct_equals_auroc_and_ends_at_accuracy(rng):
    k, u = rng.normal(size=50), rng.normal(0.5, size=40)
    assert oscr(k, u, np.ones(50, bool)) == pytest.approx(auroc(k, u), abs=1e-12)
    correct = rng.random(50) < 0.7
    fpr, ccr, thr = oscr_curve(k, u, correct)
    assert (fpr[0], ccr[0], thr[0]) == (0.0, 0.0, -np.inf)
    assert fpr[-1] == 1.0 and ccr[-1] == pytest.approx(correct.mean())
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(ccr) >= 0)


def test_perfect_and_reversed_separation():
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    assert fpr_at_tpr([0, 1], [2, 3]) == 0.0
    assert oscr([0, 1], [2, 3], [True, False]) == 0.5
    fpr, tpr, thr = roc_curve([0, 1], [2, 3])
    assert fpr.tolist() == [0, 0, 0, 0.5, 1] and tpr.tolist() == [0, 0.5, 1, 1, 1]


def test_threshold_at_tpr_keeps_the_requested_fraction():
    known = np.arange(20, dtype=float)  # 0.95 * 20 = 19 exactly (float gives 19.000000000000004)
    assert threshold_at_tpr(known, 0.95) == 18.0
    assert np.mean(known <= threshold_at_tpr(known, 0.95)) == 0.95
    assert threshold_at_tpr(known, 1.0) == 19.0
    assert threshold_at_tpr(known, 0.01) == 0.0
    assert threshold_at_tpr(np.arange(10.0), 0.95) == 9.0  # ceil(9.5) = 10 of 10
    assert fpr_at_tpr(known, np.array([18.0, 18.5, 30.0]), 0.95) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="tpr"):
        threshold_at_tpr(known, 0.0)
    with pytest.raises(ValueError, match="empty"):
        threshold_at_tpr([], 0.9)


def test_missing_sets_give_nan_without_warnings():
    for value in (auroc([], [1.0]), auroc([1.0], []), fpr_at_tpr([1.0], []), aupr([1.0], []),
                  aupr([], [1.0], positive="known"), oscr([], [1.0], []), oscr([1.0], [], [True])):
        assert np.isnan(value)
    m = open_set_metrics([0.1, 0.2], [], [True, False])
    assert set(m) == set(OPEN_SET_METRICS) and all(np.isnan(v) for v in m.values())


def test_bad_scores_raise():
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        auroc(np.zeros((2, 2)), [1.0])
    with pytest.raises(ValueError, match="positive"):
        aupr([0.0], [1.0], positive="both")
    with pytest.raises(ValueError, match="known_correct"):
        oscr([0.0, 1.0], [1.0], [True])


def test_f_measure_hand_computed():
    labels = [0, 1, 2, -1, -1]
    preds = [0, -1, 1, -1, 2]  # TP=1; FP: 1 rejected + 1 wrong = 2 (legacy 1); FN=1
    p, r = 1 / 3, 1 / 2
    assert open_set_f_measure(preds, labels) == pytest.approx(2 * p * r / (p + r + 1e-12))
    p = 1 / 2
    assert open_set_f_measure(preds, labels, legacy=True) == pytest.approx(2 * p * r / (p + r + 1e-12))
    assert open_set_accuracy(preds, labels) == 0.5


def test_f_measure_edge_cases_do_not_divide_by_zero():
    assert np.isnan(open_set_f_measure([-1, 2], [-1, -1]))  # no known sample
    assert np.isnan(open_set_f_measure([1, -1], [0, -1]))  # TP + FN = 0
    assert open_set_f_measure([0, 1], [0, 1]) == pytest.approx(1.0)  # no unknown sample
    assert open_set_f_measure([1, 0], [0, -1]) == 0.0  # P = R = 0 -> 0 (the 1e-12 guard)
    assert np.isnan(open_set_accuracy([0, 1], [0, 1]))
    assert np.isnan(top1_accuracy([], []))
    assert np.isnan(open_set_f_measure([], []))


def test_predict_open_threshold_is_strict():
    preds, msp = predict_open(np.zeros((1, 10)), 0.1)  # msp == 0.1 exactly: kept
    assert msp[0] == 0.1 and preds.tolist() == [0]
    preds, _ = predict_open(np.zeros((1, 12)), 0.1)  # 1/12 < 0.1: rejected
    assert preds.tolist() == [-1]
    logits = np.array([[5.0, 0.0], [0.1, 0.0]])
    preds, _ = predict_open(logits, 0.6)
    assert preds.tolist() == [0, -1]
    assert reject_by_score([0, 0], msp_score(logits), -0.6).tolist() == [0, -1]
    with pytest.raises(ValueError, match="logits"):
        predict_open(np.zeros(3))
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="NaN or infinite"):
            predict_open(np.array([[0.0, 1.0], [bad, 0.0]]))
    big = np.random.default_rng(0).normal(size=(9000, 3))  # more rows than one chunk
    p, m = predict_open(torch.from_numpy(big).float(), 0.5)
    e = np.exp(big - big.max(1, keepdims=True))
    np.testing.assert_allclose(m, (e / e.sum(1, keepdims=True)).max(1), rtol=1e-6)
    assert p.tolist() == np.where(m < 0.5, -1, big.argmax(1)).tolist()


def test_macro_f1_matches_sklearn(rng):
    y = rng.integers(0, 6, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 8, 200))  # some classes only predicted
    assert macro_f1(p, y) == pytest.approx(f1_score(y, p, average="macro", zero_division=0), abs=1e-12)
    assert np.isnan(macro_f1([], []))


def test_shot_accuracy_rules_and_absent_classes():
    counts = [100, 50, 20]
    labels = [0, 0, 1, 2, 2]
    preds = [0, 1, 1, 2, 0]
    off = shot_accuracy(preds, labels, counts)
    assert off == {"many": 0.5, "medium": 1.0, "few": 0.5}
    pap = shot_accuracy(preds, labels, counts, rule="paper")
    assert np.isnan(pap["many"]) and pap["medium"] == pytest.approx(2 / 3) and np.isnan(pap["few"])
    acc = per_class_accuracy([0], [0], 3)
    assert acc[0] == 1.0 and np.isnan(acc[1:]).all()
    with pytest.raises(ValueError, match="num_classes"):
        per_class_accuracy([0], [5], 3)
    with pytest.raises(ValueError, match="differ in shape"):
        top1_accuracy([0, 1], [0])


def test_by_group_uses_group_known_vs_all_unknown(rng):
    counts = np.array([200, 50, 5])
    y = rng.integers(0, 3, 90)
    k = rng.normal(size=90) + y * 0.5
    u = rng.normal(1.0, size=30)
    correct = rng.random(90) < 0.8
    out = open_set_metrics_by_group(k, y, u, correct, counts)
    for g, cls in (("many", 0), ("medium", 1), ("few", 2)):
        rows = y == cls
        assert out[g] == open_set_metrics(k[rows], u, correct[rows])
    empty = open_set_metrics_by_group(k[y == 0], y[y == 0], u, correct[y == 0], counts)
    assert np.isnan(empty["few"]["auroc"]) and not np.isnan(empty["many"]["auroc"])
    with pytest.raises(ValueError, match="known_labels"):
        open_set_metrics_by_group([0.0], [-1], u, [True], counts)


def test_evaluate_keys_thresholds_and_consistency(rng):
    k_classes, n_known, n_unknown = 4, 80, 30
    counts = np.array([300, 100, 40, 10])
    labels = np.r_[rng.integers(0, k_classes, n_known), -np.ones(n_unknown, int)]
    logits = rng.normal(size=(labels.size, k_classes)) * 2
    logits[np.arange(n_known), labels[:n_known]] += 2.0
    reach = rng.normal(size=labels.size)
    t = threshold_at_tpr(msp_score(logits[:n_known]), 0.9)
    r = evaluate(torch.from_numpy(logits), labels, counts, scores={"reachability": reach},
                 reject_thresholds={"msp": t, "reachability": 0.0})
    for name in ("msp", "max_logit", "energy", "reachability"):
        for m in OPEN_SET_METRICS:
            assert f"{name}.{m}" in r and all(f"{name}.{g}.{m}" in r for g in ("many", "medium", "few"))
    known = labels != -1
    assert r["reachability.auroc"] == pytest.approx(auroc(reach[known], reach[~known]))
    assert r["msp.auroc"] == pytest.approx(auroc(msp_score(logits)[known], msp_score(logits)[~known]))
    # rejection by a MSP outlier-score threshold -t equals the official rule at MSP threshold t
    again = evaluate(logits, labels, counts, open_threshold=-t, logit_scores=())
    for key in ("f_measure", "f_measure_legacy", "openset_acc", "top1", "many", "medium", "few"):
        assert r[f"reject.msp.{key}"] == pytest.approx(again[f"official.{key}"], nan_ok=True)
    assert r["reject.msp.top1"] < r["closed.top1"]  # rejection makes known accuracy drop
    # official 0.1 with 4 classes rejects nothing
    assert r["official.openset_acc"] == 0.0 and r["official.top1"] == r["closed.top1"]
    assert all(isinstance(v, float) for v in flatten_report(r).values())  # the flat keys of old


def test_evaluate_closed_only_gives_nan_open_numbers():
    logits = np.eye(3) * 4
    r = evaluate(logits, [0, 1, 2], [150, 50, 5])
    assert r["closed.top1"] == 1.0 and r["n_unknown"] == 0.0
    assert np.isnan(r["msp.auroc"]) and np.isnan(r["official.openset_acc"])
    assert r["official.f_measure"] == pytest.approx(1.0)


def test_evaluate_bad_input():
    with pytest.raises(ValueError, match="rows"):
        evaluate(np.zeros((3, 2)), [0, 1], [5, 5])
    with pytest.raises(ValueError, match="train_counts"):
        evaluate(np.zeros((2, 2)), [0, 3], [5, 5])
    with pytest.raises(ValueError, match="unknown score"):
        evaluate(np.zeros((2, 2)), [0, -1], [5, 5], reject_thresholds={"nope": 0.0})
    with pytest.raises(ValueError, match="scores"):
        evaluate(np.zeros((2, 2)), [0, -1], [5, 5], scores={"r": [0.0]})
