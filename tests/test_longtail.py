"""oltr.longtail: logit adjustment, its losses, τ-normalisation and validation tuning."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oltr.longtail import (
    BalancedSoftmaxLoss,
    LogitAdjustedLoss,
    log_prior,
    logit_adjust,
    tau_normalize,
    tune_tau,
    tune_tau_normalization,
)
from oltr.nn import CosNormClassifier

COUNTS = [640, 320, 160, 80, 40, 20, 10]


def test_log_prior_is_log_of_normalised_counts():
    expected = np.log(np.array(COUNTS) / sum(COUNTS))
    np.testing.assert_allclose(log_prior(COUNTS), expected, rtol=1e-15)
    np.testing.assert_allclose(log_prior(torch.tensor(COUNTS)), expected, rtol=1e-15)


@pytest.mark.parametrize("bad", [[], [[1, 2]], [3, 0, 1], [3, -1], [3, float("nan")], [2, float("inf")]])
def test_bad_train_counts_are_refused(bad):
    with pytest.raises(ValueError, match="train_counts"):
        log_prior(bad)


def test_train_counts_length_must_match_the_logits():
    with pytest.raises(ValueError, match="train_counts has 7 classes but the logits have 6"):
        logit_adjust(np.zeros((2, 6)), COUNTS)
    with pytest.raises(ValueError, match="7 classes but the logits have 8"):
        logit_adjust(torch.zeros(2, 8), COUNTS)


def test_logit_adjust_numpy_and_torch_agree_and_keep_their_type(rng):
    logits = rng.standard_normal((5, 7)).astype(np.float32)
    out = logit_adjust(logits, COUNTS, tau=0.5)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, logits - 0.5 * log_prior(COUNTS), rtol=1e-6)
    t = torch.from_numpy(logits.copy()).double().requires_grad_()
    out_t = logit_adjust(t, COUNTS, tau=0.5)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float64
    np.testing.assert_allclose(out_t.detach().numpy(), out, rtol=1e-6)
    out_t.sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), np.ones((5, 7)))
    np.testing.assert_array_equal(logit_adjust(logits, COUNTS, tau=0.0), logits)


def test_logit_adjust_refuses_bad_logits_and_tau():
    with pytest.raises(ValueError, match="logits"):
        logit_adjust(np.zeros(7), COUNTS)
    with pytest.raises(ValueError, match="logits"):
        logit_adjust(np.zeros((2, 7), dtype=complex), COUNTS)
    with pytest.raises(ValueError, match="logits"):
        logit_adjust(torch.zeros(2, 7, dtype=torch.complex64), COUNTS)
    with pytest.raises(ValueError, match="tau"):
        logit_adjust(np.zeros((2, 7)), COUNTS, tau=float("nan"))


def test_logit_adjusted_loss_is_cross_entropy_of_shifted_logits(rng):
    logits = torch.from_numpy(rng.standard_normal((16, 7))).float().requires_grad_()
    target = torch.from_numpy(rng.integers(0, 7, 16))
    shift = torch.from_numpy(log_prior(COUNTS)).float()
    for tau in (0.0, 0.5, 1.0, 2.0):
        loss = LogitAdjustedLoss(COUNTS, tau=tau)(logits, target)
        torch.testing.assert_close(loss, F.cross_entropy(logits + tau * shift, target))
    balanced = BalancedSoftmaxLoss(COUNTS, reduction="none")(logits, target)
    torch.testing.assert_close(balanced, F.cross_entropy(logits + shift, target, reduction="none"))
    balanced.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_losses_move_with_the_module_and_check_shapes():
    loss = BalancedSoftmaxLoss(COUNTS).double()
    assert loss.log_prior.dtype == torch.float64
    with pytest.raises(ValueError, match=r"\(B, 7\)"):
        loss(torch.zeros(2, 6), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="reduction"):
        LogitAdjustedLoss(COUNTS, reduction="avg")
    with pytest.raises(ValueError, match="tau"):
        LogitAdjustedLoss(COUNTS, tau=float("inf"))
    assert "tau=1.0" in repr(loss)


def test_balanced_softmax_learns_the_balanced_classifier():
    """On data whose only class signal is the prior, Balanced Softmax learns flat logits
    (the balanced posterior), while plain CE learns the prior."""
    counts = np.array([90, 9, 1])
    target = torch.from_numpy(np.repeat(np.arange(3), counts))
    plain = torch.zeros(3, requires_grad=True)
    balanced = torch.zeros(3, requires_grad=True)
    loss_fn = BalancedSoftmaxLoss(counts)
    for _ in range(300):
        for bias, fn in ((plain, lambda z: F.cross_entropy(z, target)), (balanced, lambda z: loss_fn(z, target))):
            z = bias.expand(len(target), 3)
            (grad,) = torch.autograd.grad(fn(z), bias)
            with torch.no_grad():
                bias -= 2.0 * grad
    assert torch.softmax(plain, 0)[0] > 0.85
    np.testing.assert_allclose(torch.softmax(balanced, 0).detach().numpy(), [1 / 3] * 3, atol=1e-3)


def test_tau_normalize_rows(rng):
    w = rng.standard_normal((5, 4)) * np.array([[10], [5], [1], [0.1], [0]])
    np.testing.assert_array_equal(tau_normalize(w, 0.0), w)
    unit = tau_normalize(w, 1.0)
    np.testing.assert_allclose(np.linalg.norm(unit[:4], axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(unit[4], 0.0)  # a zero row stays zero
    half = tau_normalize(w.astype(np.float32), 0.5)
    assert half.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(half[:4], axis=1), np.linalg.norm(w[:4], axis=1) ** 0.5, rtol=1e-5)
    t = torch.from_numpy(w).requires_grad_()
    tau_normalize(t, 0.5).sum().backward()
    np.testing.assert_allclose(tau_normalize(t, 0.5).detach().numpy(), tau_normalize(w, 0.5), rtol=1e-12)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            tau_normalize(w, bad)
    with pytest.raises(ValueError, match="weight"):
        tau_normalize(np.zeros(3), 1.0)


def test_tau_normalize_is_a_no_op_on_the_cosine_classifier():
    torch.manual_seed(0)
    head = CosNormClassifier(8, 5).eval()
    x = torch.randn(6, 8)
    before = head(x)
    with torch.no_grad():
        head.weight.copy_(tau_normalize(head.weight * torch.arange(1.0, 6.0).unsqueeze(1), 0.7))
    torch.testing.assert_close(head(x), before, rtol=1e-5, atol=1e-5)


def _long_tailed_logits(rng, counts, n_per_class=200, strength=1.0):
    """Balanced validation logits with a long-tailed bias of ``strength * log prior``."""
    k = len(counts)
    labels = np.repeat(np.arange(k), n_per_class)
    clean = rng.standard_normal((len(labels), k)) + 1.5 * np.eye(k)[labels]
    return clean + strength * log_prior(counts), labels


def test_tune_tau_recovers_the_bias_on_validation(rng):
    logits, labels = _long_tailed_logits(rng, COUNTS)
    best, table = tune_tau(logits, labels, COUNTS)
    assert 0.6 <= best <= 1.4
    assert table[best] > table[0.0] + 0.1
    # open-set rows (-1) are ignored
    with_open = np.concatenate([logits, rng.standard_normal((50, 7))])
    assert tune_tau(with_open, np.concatenate([labels, -np.ones(50, int)]), COUNTS)[0] == best


def test_tune_tau_checks_its_inputs():
    with pytest.raises(ValueError, match="no known sample"):
        tune_tau(np.zeros((2, 7)), [-1, -1], COUNTS)
    with pytest.raises(ValueError, match="must match"):
        tune_tau(np.zeros((2, 7)), [0], COUNTS)
    with pytest.raises(ValueError, match=r"in \[0, 7\)"):
        tune_tau(np.zeros((2, 7)), [0, 7], COUNTS)
    with pytest.raises(ValueError, match="taus is empty"):
        tune_tau(np.zeros((2, 7)), [0, 1], COUNTS, taus=[])


def test_tune_tau_normalization_prefers_normalised_rows_for_inflated_head_weights(rng):
    k, d = 5, 16
    centers = np.linalg.qr(rng.standard_normal((d, k)))[0].T  # orthonormal class directions
    labels = np.repeat(np.arange(k), 100)
    feats = 2.0 * centers[labels] + 0.6 * rng.standard_normal((len(labels), d))
    weight = centers * np.array([8.0, 4.0, 2.0, 1.0, 0.5])[:, None]  # head classes: larger norms
    best, table = tune_tau_normalization(feats, labels, weight)
    assert best >= 0.5 and table[best] > table[0.0] + 0.05
    with pytest.raises(ValueError, match="share D"):
        tune_tau_normalization(feats[:, :3], labels, weight)


# ------------------------------------------------------------------------------ NCM
def test_ncm_is_the_nearest_mean_of_centred_normalised_features(rng):
    from oltr.errors import NotFittedError
    from oltr.longtail import NCM

    centers = rng.standard_normal((5, 8)) * 3
    counts = [200, 50, 10, 5, 2]
    y = np.repeat(np.arange(5), counts)
    x = centers[y] + rng.standard_normal((len(y), 8))
    ncm = NCM().fit(x, y)
    q = centers[rng.integers(0, 5, 40)] + rng.standard_normal((40, 8))
    mu = x.mean(0)
    unit = lambda a: (a - mu) / np.linalg.norm(a - mu, axis=1, keepdims=True)  # noqa: E731
    means = np.stack([unit(x)[y == c].mean(0) for c in range(5)])
    d = ((unit(q)[:, None] - means[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(ncm.predict(q), d.argmin(1))
    np.testing.assert_allclose(ncm.logits(q), -d, rtol=1e-9, atol=1e-12)
    dist, lab = ncm.distances(q, k=2)
    np.testing.assert_allclose(dist, np.sqrt(np.sort(d, 1)[:, :2]), rtol=1e-5, atol=1e-6)
    assert ncm.num_classes == 5 and lab.shape == (40, 2)
    with pytest.raises(NotFittedError):
        NCM().predict(q)
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        NCM().fit(x[:3], np.array([0, 2, 2]))
    with pytest.raises(ValueError, match="D = 8"):
        ncm.predict(q[:, :3])
