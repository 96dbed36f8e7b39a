"""KNN, Mahalanobis, RMD, ViM, ReAct: float64 oracles, score direction, the fit/predict contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from oltr.errors import NotFittedError
from oltr.model import create_model
from oltr.scores.knn import KNN
from oltr.scores.mahalanobis import RMD, Mahalanobis
from oltr.scores.react import ReAct
from oltr.scores.vim import ViM
from test_memory_support import EXACT_BACKENDS, require_backend


@pytest.fixture
def blobs(rng):
    """4 Gaussian classes in D = 12 (train 400, test known 80) and far-away unknowns (40)."""
    centers = rng.standard_normal((4, 12)) * 4.0
    y = rng.integers(0, 4, 400)
    x = centers[y] + rng.standard_normal((400, 12))
    y_test = rng.integers(0, 4, 80)
    known = centers[y_test] + rng.standard_normal((80, 12))
    unknown = rng.standard_normal((40, 12)) * 4.0 + 12.0
    return x, y, known, unknown


def _auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    return float(np.mean(unknown[:, None] > known[None, :]))


# ------------------------------------------------------------------------------ KNN
def _knn_oracle(train, queries, k):
    t = train / np.linalg.norm(train, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    d = np.sqrt(((q[:, None, :] - t[None, :, :]) ** 2).sum(-1))
    return np.sort(d, axis=1)[:, k - 1]


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("k", [1, 7, 400])
def test_knn_equals_the_brute_force_kth_distance(blobs, backend, k):
    require_backend(backend)
    x, _, known, unknown = blobs
    queries = np.concatenate([known, unknown])
    scores = KNN(k=k, backend=backend).fit(x).predict(queries)
    np.testing.assert_allclose(scores, _knn_oracle(x, queries, k), rtol=1e-5, atol=1e-6)


def test_knn_scores_unknowns_higher(blobs):
    x, _, known, unknown = blobs
    knn = KNN(k=10).fit(x)
    assert _auroc(knn.predict(known), knn.predict(unknown)) > 0.95


def test_knn_checks_k():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            KNN(k=bad)
    with pytest.raises(ValueError, match="k = 5 is more than the 3 training features"):
        KNN(k=5).fit(np.ones((3, 2)))


# ------------------------------------------------------------------------------ Mahalanobis, RMD
def _md_oracle(train, labels, queries, relative=False):
    k = labels.max() + 1
    means = np.stack([train[labels == c].mean(0) for c in range(k)])
    cov = sum(np.outer(v, v) for v in train - means[labels]) / len(train)
    prec = np.linalg.pinv(cov)
    md = np.array([[(q - m) @ prec @ (q - m) for m in means] for q in queries])
    if not relative:
        return md.min(1)
    mu0 = train.mean(0)
    prec0 = np.linalg.pinv(np.cov(train.T, bias=True))
    md0 = np.array([(q - mu0) @ prec0 @ (q - mu0) for q in queries])
    return (md - md0[:, None]).min(1)


def test_mahalanobis_and_rmd_equal_the_pinv_formula(blobs):
    x, y, known, unknown = blobs
    q = np.concatenate([known, unknown])
    np.testing.assert_allclose(Mahalanobis().fit(x, y).predict(q), _md_oracle(x, y, q), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(RMD().fit(x, y).predict(q), _md_oracle(x, y, q, relative=True), rtol=1e-7, atol=1e-7)


def test_mahalanobis_with_a_singular_covariance_uses_the_pseudo_inverse(blobs):
    x, y, known, _ = blobs
    x2 = np.concatenate([x, x[:, :1] * 2.0], axis=1)       # one feature is a multiple of another
    q = np.concatenate([known, known[:, :1] * 2.0], axis=1)
    np.testing.assert_allclose(Mahalanobis().fit(x2, y).predict(q), _md_oracle(x2, y, q), rtol=1e-6, atol=1e-6)


def test_class_conditional_detectors_score_unknowns_higher_and_need_labels(blobs):
    x, y, known, unknown = blobs
    for det in (Mahalanobis(), RMD()):
        det.fit(x, y)
        assert _auroc(det.predict(known), det.predict(unknown)) > 0.95
        with pytest.raises(ValueError, match="needs labels"):
            type(det)().fit(x)
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no training sample"):
        Mahalanobis().fit(x[:4], np.array([0, 2, 2, 0]))


# ------------------------------------------------------------------------------ ViM, ReAct
@pytest.fixture
def head(rng):
    return rng.standard_normal((4, 12)), rng.standard_normal(4)


def _logsumexp(z):
    return np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)


def test_vim_equals_its_formula(blobs, head):
    x, _, known, _ = blobs
    w, b = head
    u = np.linalg.lstsq(w, -b, rcond=None)[0]               # minimum-norm solution of W u = -b
    vals, vecs = np.linalg.eig(np.cov((x - u).T, bias=True) + np.outer((x - u).mean(0), (x - u).mean(0)))
    residual = vecs[:, np.argsort(vals.real)[::-1][5:]].real
    alpha = (x @ w.T + b).max(1).mean() / np.linalg.norm((x - u) @ residual, axis=1).mean()
    expected = alpha * np.linalg.norm((known - u) @ residual, axis=1) - _logsumexp(known @ w.T + b)
    np.testing.assert_allclose(ViM(5, head=(w, b)).fit(x).predict(known), expected, rtol=1e-6, atol=1e-6)


def test_vim_flags_features_off_the_training_subspace(rng, head):
    w, b = head
    basis = np.linalg.qr(rng.standard_normal((12, 4)))[0]       # training data lives in 4 dims
    x = rng.standard_normal((300, 4)) @ basis.T * 3.0
    inside = rng.standard_normal((50, 4)) @ basis.T * 3.0
    outside = inside + rng.standard_normal((50, 12)) @ (np.eye(12) - basis @ basis.T) * 3.0
    vim = ViM(4, head=(w, b)).fit(x)
    assert _auroc(vim.predict(inside), vim.predict(outside)) > 0.9


def test_react_clips_at_the_training_percentile_then_takes_the_energy(blobs, head):
    x, _, known, _ = blobs
    w, b = head
    react = ReAct(80, head=(w, b)).fit(x)
    assert react.clip == pytest.approx(np.percentile(x, 80))
    expected = -_logsumexp(np.minimum(known, react.clip) @ w.T + b)
    np.testing.assert_allclose(react.predict(known), expected, rtol=1e-12)
    # percentile 100 clips nothing: the plain energy score
    full = ReAct(100, head=(w, b)).fit(x)
    big = known.copy()
    big[big > x.max()] = x.max()
    np.testing.assert_allclose(full.predict(big), -_logsumexp(big @ w.T + b), rtol=1e-12)


def test_head_forms_and_errors(blobs, head):
    x, _, known, _ = blobs
    w, b = head
    linear = torch.nn.Linear(12, 4).double()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w))
        linear.bias.copy_(torch.from_numpy(b))
    np.testing.assert_allclose(ViM(3, head=linear).fit(x).predict(known), ViM(3, head=(w, b)).fit(x).predict(known))
    with pytest.raises(ValueError, match="needs the linear head"):
        ViM(3).fit(x)
    with pytest.raises(ValueError, match="needs the linear head"):
        ReAct().fit(x)
    with pytest.raises(ValueError, match="dim = 12 must be < D = 12"):
        ViM(12, head=(w, b)).fit(x)
    with pytest.raises(ValueError, match="percentile"):
        ReAct(0)
    oltr_model = create_model("cnn8", num_classes=4, stage="oltr")
    with pytest.raises(TypeError, match="no linear head"):
        ViM(3, head=oltr_model)


# ------------------------------------------------------------------------------ the contract
def _all(head):
    return [KNN(k=3), Mahalanobis(), RMD(), ViM(4, head=head), ReAct(90, head=head)]


def test_not_fitted_aliases_types_and_bad_input(blobs, head):
    x, y, known, _ = blobs
    for det in _all(head):
        with pytest.raises(NotFittedError):
            det.predict(known)
        assert det.fit_features(x, y) is det
        np.testing.assert_array_equal(det.predict_features(known), det.predict(known))
        out = det.predict(torch.from_numpy(known))
        assert isinstance(out, torch.Tensor) and out.shape == (80,)
        np.testing.assert_allclose(out.numpy(), det.predict(known), rtol=1e-6)
        assert det(known).shape == (80,)
        with pytest.raises(ValueError, match="D = 12"):
            det.predict(known[:, :5])
        with pytest.raises(TypeError, match="complex"):
            det.predict(known.astype(np.complex128))
        with pytest.raises(ValueError, match="NaN"):
            det.predict(np.full((1, 12), np.nan))
        with pytest.raises(ValueError, match="empty"):
            det.fit(np.zeros((0, 12)), np.zeros(0, np.int64))


def test_fit_and_predict_through_a_model_equal_the_feature_forms(rng):
    torch.manual_seed(0)
    model = create_model("cnn8", num_classes=3, stage="plain")
    images = torch.from_numpy(rng.standard_normal((60, 1, 8, 8))).float()
    labels = torch.arange(60) % 3
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    model.eval()
    with torch.no_grad():
        feats = model(images)[1].direct.double().numpy()
    model.train()
    for make in (lambda: KNN(k=5), Mahalanobis, lambda: ViM(8)):
        fitted = make().fit(loader, model=model)
        assert model.training  # the model's mode is restored
        expected = make()
        if isinstance(expected, ViM):
            expected = ViM(8, head=model)
        expected.fit(feats, labels.numpy())
        np.testing.assert_allclose(fitted.predict(images[:10], model=model), expected.predict(feats[:10]),
                                   rtol=1e-5, atol=1e-6)
