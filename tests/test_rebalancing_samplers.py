"""Square-root and progressive samplers (Decoupling): class frequencies, seeding, sharding."""
from __future__ import annotations

import numpy as np
import pytest

from oltr.data.rebalancing_samplers import PowerSampler, ProgressiveSampler, SquareRootSampler, class_probabilities

COUNTS = np.array([400, 100, 25, 4])
LABELS = np.repeat(np.arange(4), COUNTS)


def _class_freq(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return np.bincount(LABELS[list(sampler)], minlength=4) / len(sampler)


def test_square_root_sampler_draws_classes_by_sqrt_counts():
    s = SquareRootSampler(LABELS, seed=1, num_samples=40_000)
    np.testing.assert_allclose(_class_freq(s), np.sqrt(COUNTS) / np.sqrt(COUNTS).sum(), atol=0.01)


@pytest.mark.parametrize("q", [0.0, 1.0])
def test_power_sampler_extremes(q):
    s = PowerSampler(LABELS, q=q, seed=2, num_samples=40_000)
    np.testing.assert_allclose(_class_freq(s), class_probabilities(COUNTS, q), atol=0.01)


def test_progressive_sampler_moves_from_instance_to_class_balanced():
    s = ProgressiveSampler(LABELS, total_epochs=4, seed=3, num_samples=40_000)
    np.testing.assert_allclose(_class_freq(s, 0), COUNTS / COUNTS.sum(), atol=0.01)
    np.testing.assert_allclose(_class_freq(s, 2), 0.5 * COUNTS / COUNTS.sum() + 0.5 / 4, atol=0.01)
    np.testing.assert_allclose(_class_freq(s, 4), [0.25] * 4, atol=0.01)
    np.testing.assert_allclose(_class_freq(s, 9), [0.25] * 4, atol=0.01)  # stays balanced after T


def test_images_within_a_class_are_uniform_and_the_stream_is_seeded_per_epoch():
    s = PowerSampler(LABELS, q=0.0, seed=4, num_samples=20_000)
    items = np.array(list(s))
    tail = items[LABELS[items] == 3]
    np.testing.assert_allclose(np.bincount(tail - 525, minlength=4) / tail.size, [0.25] * 4, atol=0.03)
    again = PowerSampler(LABELS, q=0.0, seed=4, num_samples=20_000)
    assert list(again) == items.tolist()
    again.set_epoch(1)
    assert list(again) != items.tolist()
    s.set_epoch(1)
    assert list(s) == list(again)


def test_ranks_partition_the_single_process_stream():
    one = SquareRootSampler(LABELS, seed=5, num_samples=101, num_replicas=1, rank=0)
    parts = [list(SquareRootSampler(LABELS, seed=5, num_samples=101, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 51
    merged = [x for pair in zip(*parts) for x in pair]
    assert merged[:101] == list(SquareRootSampler(LABELS, seed=5, num_samples=102, num_replicas=1, rank=0))[:101]
    assert len(one) == 101


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": np.array([0, -1])}, "non-negative"),
    ({"labels": np.zeros((2, 2), int)}, "1-D"),
    ({"labels": LABELS, "q": -1.0}, "q must be"),
    ({"labels": LABELS, "q": float("nan")}, "q must be"),
    ({"labels": LABELS, "num_samples": 0}, "num_samples"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PowerSampler(**kwargs)
    with pytest.raises(ValueError, match="total_epochs"):
        ProgressiveSampler(LABELS, total_epochs=0)
    with pytest.raises(ValueError, match="epoch"):
        SquareRootSampler(LABELS).set_epoch(-1)
