"""The report (oltr.report/1) on a hand-computed case, legacy flat keys, and strict JSON."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from oltr.inference import Outputs, evaluate_outputs, json_ready
from oltr.metrics import REPORT_SCHEMA, evaluate, flatten_report
from oltr.train.config import DEFAULTS


def _case(reach=None) -> Outputs:
    logits = np.array([[5, 0], [0, 5], [1, 0], [0.1, 0], [4, 0]], dtype=np.float32)
    labels = np.array([0, 1, 1, -1, -1])
    return Outputs(logits=logits, features=np.zeros((5, 2), np.float32), labels=labels, reachability=reach)


def test_hand_computed_closed_official_and_val_threshold():
    thresholds = {"msp": -0.6, "open_threshold": 0.1}
    m = evaluate_outputs(_case(), np.array([150, 10]), DEFAULTS["eval"], thresholds=thresholds)
    assert m["schema"] == REPORT_SCHEMA and (m["num_known"], m["num_unknown"]) == (3, 2)
    closed = m["closed"]
    assert closed["top1"] == pytest.approx(2 / 3) and closed["many"] == 1.0 and closed["few"] == 0.5
    assert math.isnan(closed["medium"])  # no medium-shot class: nan, no division by zero
    # K = 2: the official 0.1 threshold rejects nothing; TP 2, FP 1, FN 2 -> F = 4/7
    assert m["official"]["f_measure"] == pytest.approx(4 / 7) and m["official"]["threshold"] == 0.1
    assert m["official"]["open_set_accuracy"] == 0.0 and m["official"]["rejected_known"] == 0.0
    # val threshold: max softmax < 0.6 rejected -> the 0.525 open sample; TP 2, FP 1, FN 1
    assert set(m["reject"]) == {"msp"}  # open_threshold is not a score
    val = m["reject"]["msp"]
    assert val["f_measure"] == pytest.approx(2 / 3) and val["open_set_accuracy"] == 0.5
    assert val["threshold"] == pytest.approx(-0.6)
    assert m["modern"]["msp"]["auroc"] == pytest.approx(5 / 6)
    assert "reachability" not in m["modern"]  # the outputs carry no reachability


def test_reachability_comes_from_the_outputs():
    reach = np.array([9.0, 8.0, 7.0, 1.0, 2.0], np.float32)  # larger = nearer the memory
    m = evaluate_outputs(_case(reach), np.array([150, 10]), DEFAULTS["eval"], thresholds={"reachability": -5.0})
    assert m["modern"]["reachability"]["auroc"] == 1.0  # every unknown is farther than every known
    reject = m["reject"]["reachability"]
    assert reject["open_set_accuracy"] == 1.0 and reject["rejected_known"] == 0


def test_without_unknowns_the_structure_is_the_same_and_open_numbers_are_nan():
    case = _case()
    known = Outputs(case.logits[:3], case.features[:3], case.labels[:3])
    with_open = evaluate_outputs(case, np.array([150, 10]), DEFAULTS["eval"], thresholds={"msp": -0.6})
    closed_only = evaluate_outputs(known, np.array([150, 10]), DEFAULTS["eval"], thresholds={"msp": -0.6})
    assert _keys(with_open) == _keys(closed_only)
    assert all(math.isnan(v) for k, v in flatten_report(closed_only).items() if k.startswith("msp."))


def _keys(tree, prefix=""):
    if not isinstance(tree, dict):
        return {prefix}
    return set().union(*(_keys(v, f"{prefix}/{k}") for k, v in tree.items() if k != "meta")) | {prefix}


def test_evaluate_is_the_same_report_and_reads_the_old_flat_keys():
    case = _case()
    m = evaluate_outputs(case, np.array([150, 10]), DEFAULTS["eval"], thresholds={"msp": -0.6})
    r = evaluate(case.logits, case.labels, [150, 10], reject_thresholds={"msp": -0.6})
    assert _keys(r) == _keys(m)
    assert json_ready(r["closed"]) == json_ready(m["closed"]) and json_ready(r["reject"]) == json_ready(m["reject"])
    assert r["official.openset_acc"] == r["official"]["open_set_accuracy"]
    assert r["msp.auroc"] == r["modern"]["msp"]["auroc"]
    assert r["msp.few.auroc"] == r["modern"]["msp"]["groups"]["few"]["auroc"]
    assert r["reject.msp.openset_acc"] == 0.5 and r["n_known"] == 3 and r["tpr"] == 0.95
    assert "msp.many.oscr" in r and "msp.bogus" not in r and "closed.nope" not in r
    with pytest.raises(KeyError):
        r["closed.nope"]
    flat = flatten_report(r)
    assert flat["official.openset_acc"] == r["official.openset_acc"] and flat["n_unknown"] == 2.0
    assert all(isinstance(v, float) for v in flat.values())


@pytest.mark.parametrize("kwargs, match", [
    ({"open_threshold": float("nan")}, "open_threshold"),
    ({"open_threshold": float("inf")}, "open_threshold"),
    ({"reject_thresholds": {"msp": float("nan")}}, r"reject_thresholds\['msp'\]"),
    ({"tpr": "x"}, "tpr"),
])
def test_non_finite_thresholds_are_refused(kwargs, match):
    case = _case()
    with pytest.raises(ValueError, match=match):
        evaluate(case.logits, case.labels, [150, 10], **kwargs)


def test_strict_json():
    m = evaluate_outputs(_case(), np.array([150, 10]), DEFAULTS["eval"])
    text = json.dumps(json_ready({"m": m, "x": np.float32(1.5), "a": np.array([1.0, np.inf])}), allow_nan=False)
    back = json.loads(text)
    assert back["m"]["closed"]["medium"] is None and back["x"] == 1.5 and back["a"] == [1.0, None]
    assert back["m"]["schema"] == REPORT_SCHEMA
