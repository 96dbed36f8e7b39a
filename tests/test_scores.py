"""Outlier scores and detectors: values, direction, numpy/torch types, fitting."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oltr.errors import NotFittedError
from oltr.scores import (
    EnergyBased,
    MaxLogit,
    MaxSoftmax,
    NearestCentroid,
    Reachability,
    centroid_distance_score,
    class_means,
    energy_score,
    max_logit_score,
    msp_score,
    reachability_score,
    score_from_logits,
)

LOGITS = np.array([[4.0, 0.0, 0.0], [0.1, 0.0, 0.2], [1.0, 2.0, 3.0]])


def test_logit_scores_values():
    p = np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True)
    np.testing.assert_allclose(msp_score(LOGITS), -p.max(1), rtol=1e-12)
    np.testing.assert_allclose(max_logit_score(LOGITS), -LOGITS.max(1))
    lse = np.log(np.exp(LOGITS).sum(1))
    np.testing.assert_allclose(energy_score(LOGITS), -lse, rtol=1e-12)
    t = 2.0
    np.testing.assert_allclose(energy_score(LOGITS, t), -t * np.log(np.exp(LOGITS / t).sum(1)), rtol=1e-12)


def test_direction_confident_is_less_unknown():
    for fn in (msp_score, max_logit_score, energy_score):
        s = fn(LOGITS)
        assert s[0] < s[1], fn.__name__  # the confident row scores lower (more known)


def test_output_type_follows_input():
    assert isinstance(msp_score(LOGITS), np.ndarray)
    t = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
    out = energy_score(t)
    assert isinstance(out, torch.Tensor) and out.shape == (3,) and not out.requires_grad
    assert score_from_logits("max_logit", t).tolist() == pytest.approx((-LOGITS.max(1)).tolist())
    assert msp_score(LOGITS.astype(np.int64)).dtype == np.float32


def test_bad_inputs():
    with pytest.raises(ValueError, match="2-D"):
        msp_score(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        max_logit_score(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="temperature"):
        energy_score(LOGITS, 0.0)
    with pytest.raises(ValueError, match="unknown logit score"):
        score_from_logits("odin", LOGITS)
    with pytest.raises(ValueError, match="at least one class"):
        msp_score(np.zeros((2, 0)))


def test_logit_detectors():
    for det, fn in ((MaxSoftmax(), msp_score), (MaxLogit(), max_logit_score), (EnergyBased(), energy_score)):
        assert det.fit() is det
        np.testing.assert_array_equal(det(LOGITS), fn(LOGITS))
    np.testing.assert_array_equal(EnergyBased(3.0).predict(LOGITS), energy_score(LOGITS, 3.0))


def test_class_means():
    f = np.array([[0.0, 0.0], [2.0, 2.0], [5.0, 1.0]], dtype=np.float32)
    means = class_means(f, [0, 0, 1])
    assert means.dtype == torch.float32
    np.testing.assert_allclose(means.numpy(), [[1.0, 1.0], [5.0, 1.0]])
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no sample"):
        class_means(f, [0, 0, 2])
    with pytest.raises(ValueError, match=">= 0"):
        class_means(f, [0, -1, 1])
    with pytest.raises(ValueError, match="num_classes"):
        class_means(f, [0, 3, 1], num_classes=2)


def test_centroid_scores_and_detectors(rng):
    feats = rng.normal(size=(40, 5)).astype(np.float32)
    labels = np.arange(40) % 4
    queries = rng.normal(size=(7, 5)).astype(np.float32)
    centroids = class_means(feats, labels).numpy()
    expected = np.sqrt(((queries[:, None] - centroids[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(centroid_distance_score(queries, centroids), expected, rtol=1e-5)
    np.testing.assert_allclose(reachability_score(queries, centroids), -10.0 / expected, rtol=1e-5)
    nc = NearestCentroid().fit(feats, labels)
    np.testing.assert_allclose(nc(queries), expected, rtol=1e-5)
    out = Reachability(scale=2.0).fit(feats, labels).predict(torch.from_numpy(queries))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), -2.0 / expected, rtol=1e-5)
    given = Reachability().fit_centroids(torch.from_numpy(centroids))
    np.testing.assert_allclose(given(queries), -10.0 / expected, rtol=1e-5)


def test_unfitted_centroid_detectors_raise():
    for det in (NearestCentroid(), Reachability()):
        with pytest.raises(NotFittedError, match="not fitted"):
            det.predict(np.zeros((1, 3), np.float32))
    assert issubclass(NotFittedError, ValueError)


def test_centroid_detectors_build_their_index_once_in_fit(monkeypatch, rng):
    import oltr.memory as memory
    from oltr.scores import NearestCentroid, Reachability

    built = []
    real = memory.CentroidIndex

    class Counting(real):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(memory, "CentroidIndex", Counting)
    feats = rng.standard_normal((40, 6)).astype(np.float32)
    labels = np.arange(40) % 4
    for det in (NearestCentroid().fit(feats, labels), Reachability().fit_centroids(feats[:4])):
        before = len(built)
        first = det.predict(feats[:5])
        for _ in range(3):
            np.testing.assert_array_equal(det.predict(feats[:5]), first)
        det.predict(torch.from_numpy(feats[:5]))
        assert len(built) == before  # predict reuses the index fit built
    assert len(built) == 2
    # the same numbers as the score functions
    means = feats.reshape(10, 4, 6).mean(0)
    np.testing.assert_allclose(NearestCentroid().fit(feats, labels).predict(feats),
                               centroid_distance_score(feats, means), rtol=1e-5)
