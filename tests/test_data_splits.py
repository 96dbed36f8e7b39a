"""Split builders and shot groups."""
from __future__ import annotations

import numpy as np
import pytest

from oltr.data import (
    longtail_counts,
    make_balanced_split,
    make_longtail_split,
    make_open_split,
    remap_labels,
    shot_groups,
)


def test_exp_counts_exact_profile():
    assert longtail_counts(7, 640, "exp", imbalance=64).tolist() == [640, 320, 160, 80, 40, 20, 10]
    c = longtail_counts(10, 500, "exp", imbalance=100)
    assert c[0] == 500 and c[-1] == 5
    assert np.all(np.diff(c) <= 0)
    expected = np.floor(500 * 100.0 ** (-np.arange(10) / 9) + 0.5)
    assert c.tolist() == expected.astype(int).tolist()


def test_pareto_counts_share_ends_and_decay_faster():
    exp = longtail_counts(1000, 1280, "exp", imbalance=256)
    par = longtail_counts(1000, 1280, "pareto", imbalance=256, alpha=6)
    assert par[0] == 1280 and par[-1] == 5 and np.all(np.diff(par) <= 0)
    c = 256 ** (1 / 6) - 1
    assert par[500] == int(np.floor(1280 * (1 + c * 500 / 999) ** -6 + 0.5))
    assert par[500] < exp[500]  # a power law drops faster from the head than exp here


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(num_classes=0, max_count=5), "num_classes"), (dict(num_classes=3, max_count=0), "max_count"),
     (dict(num_classes=3, max_count=5, imbalance=0.5), "imbalance"),
     (dict(num_classes=3, max_count=5, kind="zipf"), "kind"),
     (dict(num_classes=3, max_count=5, kind="pareto", alpha=0), "alpha")],
)
def test_counts_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        longtail_counts(**kwargs)


def test_min_count_floor():
    assert longtail_counts(3, 10, imbalance=1000).tolist() == [10, 1, 1]
    assert longtail_counts(3, 10, imbalance=1000, min_count=2).tolist() == [10, 2, 2]


def test_longtail_split_counts_seed_and_exclusion():
    labels = np.repeat(np.arange(4), 50)
    rng = np.random.default_rng(3)
    labels = labels[rng.permutation(labels.size)]
    counts = [40, 20, 10, 5]
    a = make_longtail_split(labels, counts, seed=1)
    b = make_longtail_split(labels, counts, seed=1)
    c = make_longtail_split(labels, counts, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(labels[a], minlength=4).tolist() == counts
    assert np.all(np.diff(a) > 0)  # sorted, unique
    held = make_balanced_split(labels, 10, seed=0)
    d = make_longtail_split(labels, counts, seed=1, exclude=held)
    assert not np.intersect1d(d, held).size
    reordered = make_longtail_split(labels, counts, seed=1, classes=[3, 2, 1, 0])
    assert np.bincount(labels[reordered], minlength=4).tolist() == counts[::-1]
    with pytest.raises(ValueError, match="class 0 has 50 available images, 60 requested"):
        make_longtail_split(labels, [60, 1, 1, 1])
    for bad, match in (([1, 1], r"one count per class \(4 classes\), got shape \(2,\)"),
                       ([1, 1, 1, 1, 1], r"got shape \(5,\)"), ([1, -1, 1, 1], "class 1 has -1"),
                       ([1, 2.5, 1, 1], "whole numbers")):
        with pytest.raises(ValueError, match=f"^counts must .*{match}"):
            make_longtail_split(labels, bad)
    with pytest.raises(ValueError, match=r"one count per class \(3 classes\)"):
        make_longtail_split(labels, [1, 1], classes=[0, 1, 2])


def test_balanced_split():
    labels = np.repeat(np.arange(3), [10, 12, 15])
    idx = make_balanced_split(labels, 7, seed=4, classes=[0, 2])
    assert np.bincount(labels[idx], minlength=3).tolist() == [7, 0, 7]


def test_open_split_and_remap():
    labels = np.array([0, 1, 2, 3, 4, 2, 1, 0])
    split = make_open_split(labels, unknown_classes=[1, 3])
    assert split.known_classes.tolist() == [0, 2, 4]
    assert split.unknown_indices.tolist() == [1, 3, 6]
    assert split.known_indices.tolist() == [0, 2, 4, 5, 7]
    assert remap_labels(labels, split.known_classes).tolist() == [0, -1, 1, -1, 2, 1, -1, 0]
    with pytest.raises(ValueError, match="do not occur"):
        make_open_split(labels, [9])
    with pytest.raises(ValueError, match="both known and unknown"):
        make_open_split(labels, [1], known_classes=[0, 1])


def test_shot_groups_rules_at_boundaries():
    counts = [150, 100, 99, 21, 20, 19]
    off = shot_groups(counts)
    assert off.many.tolist() == [True, True, False, False, False, False]
    assert off.few.tolist() == [False, False, False, False, True, True]
    assert off.medium.tolist() == [False, False, True, True, False, False]
    pap = shot_groups(counts, rule="paper")
    assert pap.many.tolist() == [True, False, False, False, False, False]
    assert pap.few.tolist() == [False, False, False, False, False, True]
    with pytest.raises(ValueError, match="rule"):
        shot_groups(counts, rule="other")
    with pytest.raises(ValueError, match="few_thr"):
        shot_groups(counts, many_thr=10, few_thr=20)
