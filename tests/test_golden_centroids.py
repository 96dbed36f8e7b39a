"""compute_centroids against golden/centroids_cal.npz (official centroids_cal), and its contract."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from oltr import compute_centroids


class _IdentityFeatures(nn.Module):
    """A feature model returning its input as the direct feature (as the golden run did)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)  # a submodule whose mode must be restored
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        assert not self.training, "compute_centroids must run in eval mode"
        assert not torch.is_grad_enabled(), "compute_centroids must run without grad"
        return x * self.scale, None


def _batches(features, labels, batch_size, extra=False):
    for start in range(0, len(labels), batch_size):
        batch = (features[start:start + batch_size], labels[start:start + batch_size])
        yield batch + (["path"] * len(batch[1]),) if extra else batch


def test_matches_the_official_centroids_cal(golden, device):
    g = golden("centroids_cal")
    model = _IdentityFeatures().to(device)
    features, labels = torch.as_tensor(g["in.train_features"]), torch.as_tensor(g["in.train_labels"])
    centroids, counts = compute_centroids(model, _batches(features, labels, 7, extra=True), 12, return_counts=True)
    assert centroids.dtype == torch.float32 and centroids.device.type == device
    torch.testing.assert_close(centroids.cpu(), torch.as_tensor(g["out.centroids"]), atol=1e-5, rtol=1e-5)
    assert torch.equal(counts.cpu(), torch.as_tensor(g["out.class_count"]))


def test_missing_class_raises_naming_it_unless_a_fallback_is_chosen(golden):
    g = golden("centroids_cal")
    features, labels = torch.as_tensor(g["in.train_features"]), torch.as_tensor(g["in.train_labels"])
    keep = (labels != 7) & (labels != 10)
    features, labels = features[keep], labels[keep]
    model = _IdentityFeatures()
    with pytest.raises(ValueError, match=r"class\(es\) \[7, 10\] have no sample"):
        compute_centroids(model, _batches(features, labels, 5), 12)
    zeros = compute_centroids(model, _batches(features, labels, 5), 12, fallback="zeros")
    assert torch.count_nonzero(zeros[[7, 10]]) == 0
    torch.testing.assert_close(zeros[0], features[labels == 0].mean(0))
    global_mean = compute_centroids(model, _batches(features, labels, 5), 12, fallback="global_mean")
    torch.testing.assert_close(global_mean[7], features.mean(0))
    torch.testing.assert_close(global_mean[10], features.mean(0))
    with pytest.raises(ValueError, match="fallback must be one of"):
        compute_centroids(model, _batches(features, labels, 5), 12, fallback="mean")


def test_restores_each_submodule_mode_and_rejects_bad_labels():
    model = _IdentityFeatures()
    model.train()
    model.bn.eval()
    features = torch.randn(6, 4)
    compute_centroids(model, [(features, torch.tensor([0, 1, 0, 1, 0, 1]))], 2)
    assert model.training and not model.bn.training
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\), got -1"):
        compute_centroids(model, [(features, torch.tensor([0, 1, -1, 1, 0, 1]))], 2)
    assert model.training and not model.bn.training  # restored on error too
    with pytest.raises(ValueError, match="yielded no batch"):
        compute_centroids(model, [], 2)


def test_uses_the_direct_feature_of_an_oltr_model():
    from oltr.model import create_model

    torch.manual_seed(0)
    model = create_model("cnn8", 3, "oltr")
    images, labels = torch.randn(9, 1, 8, 8), torch.tensor([0, 1, 2] * 3)
    centroids = compute_centroids(model, [(images[:4], labels[:4]), (images[4:], labels[4:])], 3)
    model.eval()
    with torch.no_grad():
        direct = model(images)[1].direct
    expected = torch.stack([direct[labels == k].mean(0) for k in range(3)])
    torch.testing.assert_close(centroids, expected, atol=1e-5, rtol=1e-5)
