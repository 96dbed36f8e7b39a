"""MetaEmbeddingClassifier against golden/meta_embedding.npz (the official module's numbers)."""
from __future__ import annotations

import torch

from oltr.nn import CosNormClassifier, MetaEmbeddingClassifier

TOL = dict(atol=1e-5, rtol=1e-5)
LOGIT_TOL = dict(atol=1e-4, rtol=1e-4)


def _t(array, device):
    return torch.as_tensor(array).to(device)


def _classifier(g, device, nearest_backend="torch") -> MetaEmbeddingClassifier:
    num_classes, feat_dim = g["param.fc_hallucinator.weight"].shape
    layer = MetaEmbeddingClassifier(feat_dim, num_classes, nearest_backend=nearest_backend)
    state = {k[len("param."):]: torch.as_tensor(v) for k, v in g.items() if k.startswith("param.")}
    layer.load_state_dict(state, strict=True)
    return layer.to(device)


def _close(actual, expected, device, **tol):
    torch.testing.assert_close(actual.detach(), _t(expected, device), **(tol or TOL))


def test_forward_matches_every_intermediate(golden, device):
    g = golden("meta_embedding")
    layer = _classifier(g, device)
    x, centroids = _t(g["in.x"], device), _t(g["in.centroids"], device)
    logits, extras = layer(x, centroids)
    _close(logits, g["out.logits"], device, **LOGIT_TOL)
    _close(extras.direct, g["out.direct_feature"], device)
    _close(extras.infused, g["out.infused_feature"], device)
    _close(extras.memory, g["mid.memory_feature"], device)
    _close(extras.selector, g["mid.concept_selector"], device)
    _close(extras.reachability, g["mid.reachability"], device)
    _close(extras.meta_embedding, g["mid.meta_embedding"], device)
    _close(extras.meta_embedding.norm(dim=1), g["mid.meta_norm"], device)
    assert torch.equal(extras.nearest.cpu(), torch.as_tensor(g["mid.nearest_centroid"]))
    probs = torch.softmax(logits, dim=1)
    _close(probs, g["out.probs"], device)
    max_prob, pred = probs.max(dim=1)
    _close(max_prob, g["out.max_prob"], device)
    assert torch.equal(pred.cpu(), torch.as_tensor(g["out.pred_closed"]))
    for key, threshold in (("out.pred_open", 0.1), ("out.pred_open_thr050", 0.5)):
        open_pred = torch.where(max_prob < threshold, torch.full_like(pred, -1), pred)
        assert torch.equal(open_pred.cpu(), torch.as_tensor(g[key])), key


def test_hallucinator_and_distance_intermediates(golden, device):
    g = golden("meta_embedding")
    layer = _classifier(g, device)
    x, centroids = _t(g["in.x"], device), _t(g["in.centroids"], device)
    hallucinated = layer.fc_hallucinator(x)
    _close(hallucinated, g["mid.hallucinator_logits"], device)
    _close(torch.softmax(hallucinated, dim=1), g["mid.values_memory"], device)
    # the official full distance matrix: the classifier needs only its row minimum and argmin
    _, extras = layer(x, centroids)
    dist_cur = torch.as_tensor(g["mid.dist_cur"])
    _close(layer.reach_scale / extras.reachability, dist_cur.min(dim=1).values.numpy(), device)
    assert torch.equal(extras.nearest.cpu(), dist_cur.argmin(dim=1))


def test_cross_entropy_gradients(golden, device):
    g = golden("meta_embedding")
    layer = _classifier(g, device)
    x = _t(g["in.x"], device).requires_grad_(True)
    centroids = _t(g["in.centroids"], device).requires_grad_(True)  # must stay untouched (detached)
    logits, _ = layer(x, centroids)
    loss = torch.nn.functional.cross_entropy(logits, _t(g["in.ce_labels"], device))
    _close(loss, g["out.ce_loss"], device)
    loss.backward()
    _close(x.grad, g["grad.x"], device)
    for name, param in layer.named_parameters():
        _close(param.grad, g[f"grad.{name}"], device)
    assert centroids.grad is None


def test_parameter_names_are_the_official_keys(golden):
    g = golden("meta_embedding")
    layer = MetaEmbeddingClassifier(64, 12)
    expected = {k[len("param."):]: v.shape for k, v in g.items() if k.startswith("param.")}
    assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == expected


def test_cosnorm_code_form_is_the_official_formula(golden):
    g = golden("meta_embedding")
    cosnorm = CosNormClassifier(64, 12)
    cosnorm.load_state_dict({"weight": torch.as_tensor(g["param.cosnorm_classifier.weight"])})
    meta = torch.as_tensor(g["mid.meta_embedding"])
    torch.testing.assert_close(cosnorm(meta).detach(), torch.as_tensor(g["out.logits"]), **LOGIT_TOL)
