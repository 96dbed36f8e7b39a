"""DiscCentroidsLoss against golden/disc_centroids_loss.npz (official values and gradients)."""
from __future__ import annotations

import pytest
import torch

from oltr.nn import DiscCentroidsLoss

CASES = ["case0", "case1"]
TOL = dict(atol=1e-5, rtol=1e-5)


def _setup(g, case, device, gradient="official"):
    feat = torch.as_tensor(g[f"{case}.in.feat"]).to(device).requires_grad_(True)
    labels = torch.as_tensor(g[f"{case}.in.labels"]).to(device)
    num_classes, feat_dim = g[f"{case}.param.centroids"].shape
    loss_fn = DiscCentroidsLoss(num_classes, feat_dim, repel_margin=float(g["const.repel_margin"]),
                                repel_weight=float(g["const.repel_weight"]), gradient=gradient).to(device)
    with torch.no_grad():
        loss_fn.centroids.copy_(torch.as_tensor(g[f"{case}.param.centroids"]))
    return loss_fn, feat, labels


def _close(actual, expected, device):
    torch.testing.assert_close(actual.detach(), torch.as_tensor(expected).to(device), **TOL)


@pytest.mark.parametrize("case", CASES)
def test_values(golden, case, device):
    g = golden("disc_centroids_loss")
    loss_fn, feat, labels = _setup(g, case, device)
    terms = loss_fn.terms(feat, labels)
    _close(terms.attract, g[f"{case}.out.loss_attract"], device)
    _close(terms.repel, g[f"{case}.out.loss_repel"], device)
    _close(terms.mean_masked_sqdist, g[f"{case}.mid.mean_masked_sqdist"], device)
    _close(loss_fn(feat, labels), g[f"{case}.out.loss_total"], device)


@pytest.mark.parametrize("case", CASES)
def test_official_gradient_of_the_total(golden, case, device):
    g = golden("disc_centroids_loss")
    loss_fn, feat, labels = _setup(g, case, device)
    loss_fn(feat, labels).backward()
    _close(feat.grad, g[f"{case}.grad_total.feat"], device)
    _close(loss_fn.centroids.grad, g[f"{case}.grad_total.centroids"], device)


@pytest.mark.parametrize("case", CASES)
def test_attract_term_custom_and_autograd(golden, case, device):
    g = golden("disc_centroids_loss")
    for gradient, key in (("official", "grad_attract_custom"), ("autograd", "grad_attract_autograd")):
        loss_fn, feat, labels = _setup(g, case, device, gradient)
        loss_fn.terms(feat, labels).attract.backward()
        _close(loss_fn.centroids.grad, g[f"{case}.{key}.centroids"], device)
        _close(feat.grad, g[f"{case}.grad_attract_custom.feat"], device)  # the feat grad is exact in both


@pytest.mark.parametrize("case", CASES)
def test_weighted_loss_does_not_scale_the_official_centroid_gradient(golden, case, device):
    g = golden("disc_centroids_loss")
    weight = float(g["const.criterion_weight"])
    loss_fn, feat, labels = _setup(g, case, device)
    weighted = weight * loss_fn(feat, labels)
    _close(weighted, g[f"{case}.out.loss_weighted"], device)
    weighted.backward()
    _close(feat.grad, g[f"{case}.grad_weighted.feat"], device)
    _close(loss_fn.centroids.grad, g[f"{case}.grad_weighted.centroids"], device)


@pytest.mark.parametrize("case", CASES)
def test_autograd_mode_is_the_exact_gradient_of_the_same_loss(golden, case):
    g = golden("disc_centroids_loss")
    loss_fn, feat, labels = _setup(g, case, "cpu", "autograd")
    weight = float(g["const.criterion_weight"])
    (weight * loss_fn(feat, labels)).backward()
    # exact: everything scales with the weight, and the attract part has no 1/(1+n_k)
    expected = weight * (torch.as_tensor(g[f"{case}.grad_attract_autograd.centroids"])
                         + torch.as_tensor(g[f"{case}.grad_total.centroids"])
                         - torch.as_tensor(g[f"{case}.grad_attract_custom.centroids"]))
    torch.testing.assert_close(loss_fn.centroids.grad, expected, **TOL)
    centroids = loss_fn.centroids.detach().clone().requires_grad_(True)
    f = feat.detach().clone().requires_grad_(True)
    check = lambda f_, c_: _reference_loss(f_, labels, c_, loss_fn)  # noqa: E731
    torch.autograd.gradcheck(check, (f.double(), centroids.double()), eps=1e-6, atol=1e-4)


def _reference_loss(feat, labels, centroids, loss_fn):
    """Plain re-statement of the official equations (float64), independent of the module's code."""
    batch, num_classes = feat.shape[0], centroids.shape[0]
    attract = ((feat - centroids[labels]) ** 2).sum() / 2 / batch
    dist = ((feat[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
    dist = dist * (1 - torch.nn.functional.one_hot(labels, num_classes).to(dist.dtype))
    repel = torch.clamp(loss_fn.repel_margin - dist.sum() / (batch * num_classes), 0.0, 1e6)
    return attract + loss_fn.repel_weight * repel


@pytest.mark.parametrize("case", CASES)
def test_one_sgd_step_of_the_criterion_optimizer(golden, case, device):
    g = golden("disc_centroids_loss")
    loss_fn, feat, labels = _setup(g, case, device)
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    optimizer.zero_grad()
    (float(g["const.criterion_weight"]) * loss_fn(feat, labels)).backward()
    optimizer.step()
    _close(loss_fn.centroids, g[f"{case}.out.centroids_after_sgd_step"], device)


def test_rejects_bad_input():
    loss_fn = DiscCentroidsLoss(4, 3)
    with pytest.raises(ValueError, match="labels must lie in"):
        loss_fn(torch.zeros(2, 3), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="feat must have shape"):
        loss_fn(torch.zeros(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must have shape"):
        loss_fn(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="gradient must be one of"):
        DiscCentroidsLoss(4, 3, gradient="exact")
