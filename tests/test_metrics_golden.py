"""Metrics against the official OLTR code's outputs (golden/metrics.npz), every key."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oltr.metrics import (
    evaluate,
    macro_f1,
    open_set_accuracy,
    open_set_f_measure,
    predict_open,
    shot_accuracy,
    top1_accuracy,
)


@pytest.fixture(scope="module")
def g(request):
    return request.getfixturevalue("golden")("metrics")


def test_inputs_consistent(g):
    counts = np.bincount(g["in.train_labels"], minlength=12)
    assert counts.tolist() == g["in.train_counts"].tolist()
    assert float(g["const.open_threshold"]) == pytest.approx(0.1)
    assert int(g["const.many_shot_thr"]) == 100 and int(g["const.low_shot_thr"]) == 20


def test_closed_set(g):
    logits, labels, counts = g["in.logits"], g["in.labels"], g["in.train_counts"]
    known = labels != -1
    preds = logits[known].argmax(1)
    assert preds.tolist() == g["out.closed.preds"].tolist()
    y = labels[known]
    assert top1_accuracy(preds, y) == pytest.approx(g["out.closed.acc_top1"], abs=1e-12)
    assert macro_f1(preds, y) == pytest.approx(g["out.closed.f_measure_macro_f1"], abs=1e-12)
    shots = shot_accuracy(preds, y, counts)
    for ours, theirs in (("many", "many"), ("medium", "median"), ("few", "low")):
        assert shots[ours] == pytest.approx(g[f"out.closed.{theirs}"], abs=1e-12)


@pytest.mark.parametrize("as_torch", [False, True])
def test_official_open_set(g, as_torch):
    logits, labels, counts = g["in.logits"], g["in.labels"], g["in.train_counts"]
    if as_torch:
        logits, labels = torch.from_numpy(logits), torch.from_numpy(labels)
    preds, max_prob = predict_open(logits, float(g["const.open_threshold"]))
    np.testing.assert_allclose(max_prob, g["out.open.max_prob"], rtol=1e-6, atol=1e-7)
    assert preds.tolist() == g["out.open.preds"].tolist()
    assert open_set_accuracy(preds, labels) == pytest.approx(g["out.open.openset_acc"], abs=1e-12)
    assert open_set_f_measure(preds, labels) == pytest.approx(g["out.open.f_measure"], abs=1e-12)
    assert open_set_f_measure(preds, labels, legacy=True) == pytest.approx(
        g["out.open.f_measure_legacy"], abs=1e-12
    )
    y = np.asarray(labels)
    known = y != -1
    assert top1_accuracy(preds[known], y[known]) == pytest.approx(g["out.open.acc_top1_known"], abs=1e-12)
    shots = shot_accuracy(preds[known], y[known], counts)
    for ours, theirs in (("many", "many"), ("medium", "median"), ("few", "low")):
        assert shots[ours] == pytest.approx(g[f"out.open.{theirs}"], abs=1e-12)


def test_empty_group_is_nan(g):
    shots = shot_accuracy(g["in.empty_group.preds"], g["in.empty_group.labels"], g["in.train_counts"])
    assert shots["many"] == pytest.approx(g["out.empty_group.many"], abs=1e-12)
    assert np.isnan(g["out.empty_group.median"]) and np.isnan(shots["medium"])
    assert np.isnan(g["out.empty_group.low"]) and np.isnan(shots["few"])


def test_evaluate_reports_the_golden_numbers(g):
    r = evaluate(g["in.logits"], g["in.labels"], g["in.train_counts"])
    expected = {
        "closed.top1": "out.closed.acc_top1", "closed.macro_f1": "out.closed.f_measure_macro_f1",
        "closed.many": "out.closed.many", "closed.medium": "out.closed.median",
        "closed.few": "out.closed.low", "official.f_measure": "out.open.f_measure",
        "official.f_measure_legacy": "out.open.f_measure_legacy",
        "official.openset_acc": "out.open.openset_acc", "official.top1": "out.open.acc_top1_known",
        "official.many": "out.open.many", "official.medium": "out.open.median",
        "official.few": "out.open.low",
    }
    for ours, theirs in expected.items():
        assert r[ours] == pytest.approx(g[theirs], abs=1e-12), ours
    assert (r["n_known"], r["n_unknown"]) == (48.0, 10.0)
