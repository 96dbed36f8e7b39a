"""Undefined metrics are NaN, never an exception; bad arguments are errors naming them.

Empty inputs (N = 0), one sample, only unknowns, no unknowns, empty shot groups; NaN
thresholds and scores; train_counts too short, negative or fractional; complex arrays.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from oltr.metrics import (
    OPEN_SET_METRICS,
    aupr,
    auroc,
    evaluate,
    fpr_at_tpr,
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
)

EMPTY_PAIRS = [([], []), ([0.5], []), ([], [0.5]), ([0.1, 0.1], []), ([], [0.2, 0.7])]


@pytest.mark.parametrize("known, unknown", EMPTY_PAIRS)
def test_ranking_metrics_are_nan_when_a_set_is_missing(known, unknown):
    correct = [True] * len(known)
    for value in (auroc(known, unknown), fpr_at_tpr(known, unknown), aupr(known, unknown),
                  aupr(known, unknown, positive="known"), oscr(known, unknown, correct)):
        assert math.isnan(value)
    for fpr, rate, thr in (roc_curve(known, unknown), oscr_curve(known, unknown, correct)):
        assert fpr.shape == rate.shape == thr.shape == (len(set(known) | set(unknown)) + 1,)
        assert thr[0] == -np.inf
    metrics = open_set_metrics(known, unknown, correct)
    assert set(metrics) == set(OPEN_SET_METRICS) and all(math.isnan(v) for v in metrics.values())


def test_ranking_curves_without_samples_keep_only_the_origin():
    fpr, tpr, thr = roc_curve(np.zeros(0), torch.zeros(0))
    assert math.isnan(fpr[0]) and math.isnan(tpr[0]) and thr.tolist() == [-np.inf]


@pytest.mark.parametrize("labels, unknown", [
    ([0, 0, 1], []),         # no few-shot test class and no unknown sample
    ([2], []),               # one known sample (few-shot)
    ([], []),                # nothing at all
    ([], [0.3, 0.9]),        # only unknown samples
    ([1, 1], [0.5]),         # only the medium group has samples
])
def test_by_group_gives_nan_for_empty_groups(labels, unknown):
    counts = [150, 50, 5]  # many, medium, few
    k = np.linspace(0.0, 1.0, len(labels))
    out = open_set_metrics_by_group(k, labels, unknown, [True] * len(labels), counts)
    groups = {"many": 0, "medium": 1, "few": 2}
    for name, cls in groups.items():
        has_known = cls in labels
        for metric, value in out[name].items():
            if not has_known or not unknown:
                assert math.isnan(value), (name, metric)
            else:
                assert not math.isnan(value), (name, metric)


def _flat_values(report):
    """Every number of an evaluate() result (nested or flat)."""
    if isinstance(report, dict):
        for v in report.values():
            yield from _flat_values(v)
    elif isinstance(report, float):
        yield report


@pytest.mark.parametrize("case", ["n0", "one_known", "one_unknown", "all_unknown", "no_unknown_empty_group",
                                  "known_of_one_group"])
def test_evaluate_never_raises_on_degenerate_sets(case):
    counts = np.array([150, 50, 5])
    logits, labels = {
        "n0": (np.zeros((0, 3)), np.zeros(0, np.int64)),
        "one_known": (np.array([[2.0, 0.0, 0.0]]), np.array([0])),
        "one_unknown": (np.array([[0.0, 0.0, 0.1]]), np.array([-1])),
        "all_unknown": (np.eye(3), np.array([-1, -1, -1])),
        "no_unknown_empty_group": (np.eye(3)[:2] * 3, np.array([0, 1])),  # few-shot group empty
        "known_of_one_group": (np.eye(3)[[2, 2]] * 3, np.array([2, 2])),
    }[case]
    report = evaluate(logits, labels, counts)
    n_known, n_unknown = int((labels >= 0).sum()), int((labels < 0).sum())
    assert report["n_known"] == n_known and report["n_unknown"] == n_unknown
    if n_known == 0:
        assert math.isnan(report["closed.top1"]) and math.isnan(report["closed.many"])
    else:
        assert report["closed.top1"] == 1.0
    if n_known == 0 or n_unknown == 0:
        assert math.isnan(report["msp.auroc"]) and math.isnan(report["msp.oscr"])
    for group in ("many", "medium", "few"):
        assert math.isnan(report[f"msp.{group}.auroc"])  # never known and unknown of a group together
    if n_unknown == 0:
        assert math.isnan(report["official.openset_acc"])
    assert all(isinstance(v, float) for v in _flat_values(dict(report)))


# -- bad arguments: errors that name them --------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), np.float32("nan"), torch.tensor(float("nan"))])
def test_nan_thresholds_are_refused(bad):
    logits = np.array([[1.0, 0.0], [0.0, 0.2]])
    with pytest.raises(ValueError, match="threshold is NaN"):
        predict_open(logits, threshold=bad)
    with pytest.raises(ValueError, match="threshold is NaN"):
        reject_by_score([0, 1], [0.1, 0.9], bad)
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr([0.1], [0.2], tpr=bad)
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr([], [], tpr=bad)  # checked even when the metric itself would be nan
    with pytest.raises(ValueError, match="tpr"):
        threshold_at_tpr([0.1, 0.2], tpr=bad)
    with pytest.raises(ValueError, match="tpr"):
        open_set_metrics([0.1], [0.2], [True], tpr=bad)


def test_infinite_thresholds_still_mean_all_or_nothing():
    logits = np.array([[1.0, 0.0], [0.0, 0.2]])
    assert predict_open(logits, threshold=math.inf)[0].tolist() == [-1, -1]
    assert predict_open(logits, threshold=-math.inf)[0].tolist() == [0, 1]
    assert reject_by_score([0, 1], [0.1, 0.9], math.inf).tolist() == [0, 1]
    with pytest.raises(TypeError, match="threshold must be a real number"):
        reject_by_score([0, 1], [0.1, 0.9], 0.5 + 1j)
    with pytest.raises(TypeError, match="threshold must be a real number"):
        predict_open(logits, threshold="0.1")


@pytest.mark.parametrize("scores", [[0.1, float("nan")], [float("inf"), 0.0], [-float("inf")]])
def test_nan_or_infinite_scores_name_the_argument(scores):
    with pytest.raises(ValueError, match="known_scores contains NaN"):
        auroc(scores, [0.5])
    with pytest.raises(ValueError, match="unknown_scores contains NaN"):
        aupr([0.5], scores)
    with pytest.raises(ValueError, match="scores contains NaN"):
        reject_by_score([0] * len(scores), scores, 0.5)


@pytest.mark.parametrize("counts, match", [
    ([100, 10], "train_counts has 2 entries but labels go up to 2"),
    ([], "train_counts has 0 entries"),
    ([100, -1, 5], "train_counts must be >= 0"),
    ([100, 2.5, 5], "train_counts must hold whole numbers"),
    ([100, float("nan"), 5], "train_counts must hold whole numbers"),
    ([[100, 10, 5]], "train_counts must be 1-D"),
])
def test_bad_train_counts_are_value_errors(counts, match):
    preds, labels = [0, 1, 2], [0, 1, 2]
    with pytest.raises(ValueError, match=match):
        shot_accuracy(preds, labels, counts)
    with pytest.raises(ValueError, match=match.replace("labels", "known_labels")):
        open_set_metrics_by_group([0.1, 0.2, 0.3], labels, [0.5], [True] * 3, counts)
    with pytest.raises(ValueError, match="train_counts"):
        evaluate(np.eye(3), labels, counts)


def test_whole_float_counts_still_work():
    assert shot_accuracy([0, 1], [0, 1], np.array([150.0, 5.0]))["many"] == 1.0


@pytest.mark.parametrize("num_classes", [-1, 2.5, True])
def test_per_class_accuracy_checks_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        per_class_accuracy([0], [0], num_classes)


@pytest.mark.parametrize("make", [np.asarray, torch.tensor], ids=["numpy", "torch"])
def test_complex_arrays_are_type_errors_naming_the_argument(make):
    z = make(np.array([0.1 + 1j, 0.2 + 0j]))
    with pytest.raises(TypeError, match="known_scores must be real"):
        auroc(z, [0.5])
    with pytest.raises(TypeError, match="unknown_scores must be real"):
        oscr([0.5], z, [True])
    with pytest.raises(TypeError, match="known_correct must be real"):
        oscr([0.5, 0.1], [0.2], z)
    with pytest.raises(TypeError, match="train_counts must be real"):
        shot_accuracy([0, 1], [0, 1], z)
    with pytest.raises(TypeError, match="labels must"):
        shot_accuracy([0, 1], z, [10, 10])
    with pytest.raises(TypeError, match="logits must be real"):
        predict_open(make(np.array([[1 + 1j, 0j], [0j, 2 + 0j]])))
    with pytest.raises(TypeError, match="logits must be real"):
        evaluate(make(np.array([[1 + 1j, 0j]])), [0], [10, 10])


def test_known_correct_must_be_booleans():
    assert oscr([0.1, 0.2], [0.5], np.array([1, 0])) == oscr([0.1, 0.2], [0.5], [True, False])
    with pytest.raises(ValueError, match="known_correct must hold booleans"):
        oscr([0.1, 0.2], [0.5], [0.5, 2.0])


@pytest.mark.parametrize("thresholds", [dict(many_thr=float("nan")), dict(few_thr=float("nan")),
                                        dict(many_thr=20, few_thr=20)])
def test_nan_shot_thresholds_are_refused(thresholds):
    with pytest.raises(ValueError, match="few_thr .* must be smaller than many_thr"):
        shot_accuracy([0, 1], [0, 1], [150, 5], **thresholds)
    with pytest.raises(ValueError, match="few_thr .* must be smaller than many_thr"):
        open_set_metrics_by_group([0.1, 0.2], [0, 1], [0.5], [True, True], [150, 5], **thresholds)
