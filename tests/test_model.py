"""OLTRModel, create_model and the stage-1 -> stage-2 initialisation."""
from __future__ import annotations

import pytest
import torch

from oltr import OLTRModel
from oltr.model import create_model, init_from_stage1, stage_defaults
from oltr.nn import DiscCentroidsLoss, MetaEmbeddingClassifier


@pytest.mark.parametrize("backbone,shape", [("cnn28", (1, 28, 28)), ("cnn8", (1, 8, 8))])
def test_forward_of_both_stages(backbone, shape, device):
    torch.manual_seed(0)
    images = torch.randn(6, *shape, device=device)
    plain = create_model(backbone, 5).to(device)
    logits, extras = plain(images)
    assert plain.stage == "plain" and logits.shape == (6, 5) and extras.direct.shape == (6, 64)
    assert extras.reachability is None and extras.attention is None
    assert set(plain.classifier.state_dict()) == {"fc.weight", "fc.bias"}
    oltr_model = create_model(backbone, 5, "oltr").to(device)
    logits, extras = oltr_model(images)
    assert logits.shape == (6, 5) and extras.reachability.shape == (6,) and extras.nearest.dtype == torch.int64
    assert extras.attention.mask.shape[:2] == (6, 64)
    assert torch.isfinite(logits).all()


def test_defaults_follow_the_official_configs():
    assert stage_defaults("resnet10", "plain") == (False, False)
    assert stage_defaults("resnet10", "oltr") == (True, True)
    assert stage_defaults("resnet152", "plain") == (False, True)
    assert stage_defaults("resnet152", "oltr") == (True, True)
    model = create_model("cnn28", 3, "oltr", feat_dim=32, use_attention=False, channels=(8, 8, 16), reach_scale=5.0)
    assert model.feat_dim == 32 and not hasattr(model.feat_model, "modulatedatt")
    assert model.classifier.reach_scale == 5.0
    assert create_model("cnn8", 3, use_fc_add=False).feat_dim == 64
    with pytest.raises(ValueError, match="backbone must be one of"):
        create_model("vgg", 3)
    with pytest.raises(ValueError, match="stage must be one of"):
        create_model("cnn8", 3, "stage2")
    with pytest.raises(ValueError, match="apply to the 'oltr' stage only"):
        create_model("cnn8", 3, reach_scale=3.0)
    with pytest.raises(ValueError, match="feat_dim must be 64"):
        create_model("cnn8", 3, feat_dim=32, use_fc_add=False)


def test_resnet10_stage2_forward_at_224():
    torch.manual_seed(0)
    model = create_model("resnet10", 4, "oltr")
    logits, extras = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 4) and extras.direct.shape == (2, 512)
    assert (extras.direct >= 0).all()  # relu(fc_add(.))


def test_centroids_argument_overrides_the_buffer_and_stays_detached():
    torch.manual_seed(0)
    model = create_model("cnn8", 4, "oltr")
    criterion = DiscCentroidsLoss(4, 64)
    images, labels = torch.randn(8, 1, 8, 8), torch.tensor([0, 1, 2, 3] * 2)
    logits_live, extras = model(images, centroids=criterion.centroids)
    logits_buffer, _ = model(images)
    assert not torch.allclose(logits_live, logits_buffer)  # buffer is zeros, live centroids are not
    loss = torch.nn.functional.cross_entropy(logits_live, labels) + 0.01 * criterion(extras.direct, labels)
    loss.backward()
    # the centroid grad comes from the centroid loss only (the official custom backward)
    reference = DiscCentroidsLoss(4, 64)
    with torch.no_grad():
        reference.centroids.copy_(criterion.centroids)
    (0.01 * reference(extras.direct.detach(), labels)).backward()
    torch.testing.assert_close(criterion.centroids.grad, reference.centroids.grad)
    model.set_memory(criterion.centroids)
    torch.testing.assert_close(model(images)[0], logits_live)
    assert not model.centroids.requires_grad


def test_set_memory_validates():
    model = create_model("cnn8", 4, "oltr")
    with pytest.raises(ValueError, match=r"centroids must have shape \(4, 64\)"):
        model.set_memory(torch.zeros(3, 64))
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.set_memory(torch.full((4, 64), float("nan")))
    version = model.centroids._version
    model.set_memory(torch.ones(4, 64, dtype=torch.float64))
    assert model.centroids.dtype == torch.float32 and model.centroids._version > version


@pytest.mark.parametrize("as_state_dict", [False, True])
def test_stage2_initialised_from_stage1_as_the_official_init_weights(as_state_dict):
    torch.manual_seed(0)
    stage1 = create_model("resnet10", 7)
    stage2 = create_model("resnet10", 7, "oltr")
    fresh_att = stage2.feat_model.modulatedatt.g.weight.detach().clone()
    report = init_from_stage1(stage2, stage1.state_dict() if as_state_dict else stage1)
    assert len(report.copied) == 72 and all(k.startswith(("fc_add.", "modulatedatt.")) for k in report.kept)
    for key, value in stage1.feat_model.state_dict().items():
        assert torch.equal(stage2.feat_model.state_dict()[key], value), key
    assert torch.equal(stage2.feat_model.modulatedatt.g.weight, fresh_att)
    assert torch.equal(stage2.classifier.fc_hallucinator.weight, stage1.classifier.fc.weight)
    assert torch.equal(stage2.classifier.fc_hallucinator.bias, stage1.classifier.fc.bias)


def test_stage1_init_errors():
    stage2 = create_model("cnn8", 3, "oltr")
    with pytest.raises(ValueError, match="has no 'fc.weight'"):
        init_from_stage1(stage2, create_model("cnn8", 3, "oltr"))
    with pytest.raises(ValueError, match="source shape"):
        init_from_stage1(stage2, create_model("cnn8", 3, channels=(16, 32, 32)))


def test_freeze_backbone_is_the_official_fix():
    model = create_model("cnn28", 3, "oltr")
    frozen = model.freeze_backbone()
    trainable = {n for n, p in model.feat_model.named_parameters() if p.requires_grad}
    assert trainable and all("modulatedatt" in n or "fc" in n for n in trainable)
    assert frozen and all("modulatedatt" not in n and "fc" not in n for n in frozen)


def test_model_rejects_mismatched_parts():
    from oltr.nn import cnn8_feature
    with pytest.raises(ValueError, match="gives 64-d features"):
        OLTRModel(cnn8_feature(), MetaEmbeddingClassifier(32, 3))
    with pytest.raises(TypeError, match="classifier must be"):
        OLTRModel(cnn8_feature(), torch.nn.Linear(64, 3))
