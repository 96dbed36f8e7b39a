"""Evaluation glue on a hand-computed case, and strict-JSON output."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from oltr.train.config import DEFAULTS
from oltr.train.evaluation import evaluate_outputs, json_ready
from oltr.train.inference import Outputs


def _case() -> Outputs:
    logits = np.array([[5, 0], [0, 5], [1, 0], [0.1, 0], [4, 0]], dtype=np.float32)
    labels = np.array([0, 1, 1, -1, -1])
    return Outputs(logits=logits, features=np.zeros((5, 2), np.float32), labels=labels)


def test_hand_computed_closed_official_and_val_threshold():
    m = evaluate_outputs(_case(), np.array([150, 10]), DEFAULTS["eval"], thresholds={"msp": -0.6}, open_set=True)
    closed = m["closed"]
    assert closed["top1"] == pytest.approx(2 / 3) and closed["many"] == 1.0 and closed["few"] == 0.5
    assert math.isnan(closed["medium"])  # no medium-shot class: nan, no division by zero
    # K = 2: the official 0.1 threshold rejects nothing; TP 2, FP 1, FN 2 -> F = 4/7
    assert m["official"]["f_measure"] == pytest.approx(4 / 7)
    assert m["official"]["open_set_accuracy"] == 0.0
    # val threshold: max softmax < 0.6 rejected -> the 0.525 open sample; TP 2, FP 1, FN 1
    val = m["val_threshold"]
    assert val["f_measure"] == pytest.approx(2 / 3) and val["open_set_accuracy"] == 0.5
    assert val["max_softmax_threshold"] == pytest.approx(0.6)
    assert m["modern"]["msp"]["auroc"] == pytest.approx(5 / 6)
    assert "reachability" not in m["modern"]  # no memory given


def test_closed_only_and_strict_json():
    m = evaluate_outputs(_case(), np.array([150, 10]), DEFAULTS["eval"])
    assert set(m) == {"num_known", "num_unknown", "closed"}
    text = json.dumps(json_ready({"m": m, "x": np.float32(1.5), "a": np.array([1.0, np.inf])}), allow_nan=False)
    back = json.loads(text)
    assert back["m"]["closed"]["medium"] is None and back["x"] == 1.5 and back["a"] == [1.0, None]
