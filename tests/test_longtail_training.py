"""Long-tail corrections in training (issue 9): loss kinds, re-balancing samplers, the cosine
schedule and the classifier-only stages cRT / LWS (frozen backbone, loadable by inference)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oltr.data.rebalancing_samplers import ProgressiveSampler, SquareRootSampler
from oltr.inference import Predictor, evaluate_checkpoint
from oltr.longtail import LWSClassifier
from oltr.train import ConfigError, load_config, load_model_checkpoint, train
from oltr.train.trainer import _Run, build_model


def _config(name, out, *extra):
    return load_config(name, ["progress=false", "device=cpu", f"out_dir={out}", *extra])


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    root = tmp_path_factory.mktemp("lt_stage1")
    return train(_config("digits_lt_stage1", root / "s1", "epochs=2"))


def _first_step_loss(config):
    """(the loss the trainer logs for one step, the model before the step, that step's batch)."""
    run = _Run(config, torch.device("cpu"))
    run.initialise()
    before = copy.deepcopy(run.model)
    run.loader.sampler.set_epoch(0)
    images, labels, *_ = next(iter(run.loader))
    progress = run.train_epoch()
    return progress.mean_loss, before, images, labels, run


@pytest.mark.parametrize("kind, tau", [("ce", None), ("balanced_softmax", 1.0), ("logit_adjusted", 0.5),
                                       ("logit_adjusted", 2.0)])
def test_the_trainer_uses_the_loss_kind_formula(tmp_path, kind, tau):
    extra = [f"loss.kind={kind}", "steps_per_epoch=1", "epochs=1"] + ([f"loss.tau={tau}"] if tau else [])
    config = _config("digits_lt_stage1", tmp_path, *extra)
    logged, model, images, labels, run = _first_step_loss(config)
    model.train()
    logits, _ = model(images)
    counts = torch.tensor(run.data.train_counts, dtype=torch.float64)
    log_prior = torch.log(counts / counts.sum()).float()
    shift = {"ce": 0.0, "balanced_softmax": 1.0, "logit_adjusted": tau}[kind]
    expected = F.cross_entropy(logits + shift * log_prior, labels.long())
    assert logged == pytest.approx(float(expected.detach()), rel=1e-5, abs=1e-6)
    if kind != "ce":  # the prior term matters on this batch: plain CE would not pass
        assert abs(float(F.cross_entropy(logits.detach(), labels.long())) - logged) > 1e-3
    # the step the trainer took is SGD on this loss (first step: momentum buffer = gradient + wd * w)
    expected.backward()
    o = config["optim"]
    for name in ("weight", "bias"):
        before = getattr(model.classifier.fc, name)
        stepped = before.detach() - o["classifier_lr"] * (before.grad + o["weight_decay"] * before.detach())
        torch.testing.assert_close(getattr(run.model.classifier.fc, name).detach(), stepped, rtol=1e-5, atol=1e-6)


def test_a_prior_loss_refuses_an_empty_class(tmp_path):
    from oltr.train.losses import build_loss

    config = _config("digits_lt_stage1", tmp_path, "loss.kind=balanced_softmax")
    with pytest.raises(ConfigError, match="loss.kind 'balanced_softmax'"):
        build_loss(config, [5, 0, 3, 1, 1, 1])
    with pytest.raises(ConfigError, match="loss.kind"):
        load_config("digits_lt_stage1", ["loss.kind=focal"])
    with pytest.raises(ConfigError, match="loss.tau"):
        load_config("digits_lt_stage1", ["loss.tau=-1"])


@pytest.mark.parametrize("kind, cls", [("square_root", SquareRootSampler), ("progressive", ProgressiveSampler)])
def test_rebalancing_samplers_from_yaml(tmp_path, kind, cls):
    from oltr.train.data import build_data, steps_per_epoch, train_loader

    config = _config("digits_lt_stage1", tmp_path, f"sampler.kind={kind}", "epochs=7")
    data = build_data(config)
    loader = train_loader(config, data)
    assert type(loader.sampler) is cls
    assert len(loader.sampler) == steps_per_epoch(config, data) * config.batch_size
    if kind == "progressive":
        assert loader.sampler.total_epochs == 7
        np.testing.assert_allclose(loader.sampler.probabilities(7), np.full(6, 1 / 6))
    else:
        counts = np.asarray(data.train_counts, dtype=np.float64)
        np.testing.assert_allclose(loader.sampler.probabilities(0), np.sqrt(counts) / np.sqrt(counts).sum())
    loss, *_ = _first_step_loss(load_config("digits_lt_stage1", [
        "progress=false", "device=cpu", f"out_dir={tmp_path / 'run'}", f"sampler.kind={kind}", "steps_per_epoch=2"]))
    assert math.isfinite(loss)


def test_cosine_schedule_reaches_end_lr(tmp_path):
    config = _config("digits_lt_stage1", tmp_path, "optim.schedule=cosine", "optim.end_lr=0.001", "epochs=4",
                     "steps_per_epoch=1")
    result = train(config)
    lrs = [r["lr_classifier"] for r in result.history]
    expected = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(1, 5)]
    assert lrs == pytest.approx(expected)


def _bn_and_backbone(state):
    return {k: v for k, v in state.items() if k.startswith("feat_model.")}


@pytest.mark.parametrize("stage", ["crt", "lws"])
def test_classifier_stage_freezes_exactly_the_backbone(tmp_path, stage1, stage):
    config = _config(f"digits_lt_{stage}", tmp_path / stage, f"model.init={stage1.best_path}", "epochs=2")
    run = _Run(config, torch.device("cpu"))
    trainable = {n for n, p in run.model.named_parameters() if p.requires_grad}
    assert trainable == ({"classifier.fc.weight", "classifier.fc.bias"} if stage == "crt" else {"classifier.scales"})
    assert all(not p.requires_grad for p in run.model.feat_model.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in run.model.feat_model.modules())
    result = train(config)
    first = load_model_checkpoint(stage1.best_path)["state_dict"]
    after = load_model_checkpoint(result.best_path)["state_dict"]
    backbone = _bn_and_backbone(first)
    assert any("running_mean" in k for k in backbone)  # BatchNorm statistics are among them
    for key, value in backbone.items():  # weights, BN running statistics and counters unchanged
        assert torch.equal(after[key], value), key
    if stage == "crt":
        assert not torch.equal(after["classifier.fc.weight"], first["classifier.fc.weight"])
    else:
        assert torch.equal(after["classifier.fc.weight"], first["classifier.fc.weight"])
        assert torch.equal(after["classifier.fc.bias"], first["classifier.fc.bias"])
        assert not torch.equal(after["classifier.scales"], torch.ones(6))
    # the checkpoint loads through the one inference path
    report = evaluate_checkpoint(result.best_path, open_set=True, device="cpu")
    assert report["meta"]["stage"] == "plain" and report["num_unknown"] == 160
    assert "reachability" in report["modern"]
    predictor = Predictor.from_checkpoint(result.best_path, "cpu")
    if stage == "lws":
        assert isinstance(predictor.model.classifier, LWSClassifier)


def test_lws_logits_are_scaled_stage1_logits():
    head = LWSClassifier(4, 3)
    x = torch.randn(5, 4)
    assert torch.equal(head(x)[0], head.fc(x))  # s = 1 at the start
    with torch.no_grad():
        head.scales.copy_(torch.tensor([2.0, -1.0, 0.5]))
    expected = (x @ head.fc.weight.T + head.fc.bias) * torch.tensor([2.0, -1.0, 0.5])
    torch.testing.assert_close(head(x)[0], expected)


def test_lws_config_builds_the_scaled_head():
    config = load_config("digits_lt_lws", ["device=cpu"])
    model = build_model(config)
    assert isinstance(model.classifier, LWSClassifier) and model.stage == "plain"
    assert "classifier.scales" in model.state_dict()


def test_classifier_stage_needs_a_stage1_checkpoint(tmp_path, stage1):
    with pytest.raises(ConfigError, match="model.init"):
        load_config("digits_lt_crt", ["model.init=null"])
    second = train(_config("digits_lt_stage2", tmp_path / "s2", f"model.init={stage1.best_path}", "epochs=1",
                           "steps_per_epoch=1"))
    config = _config("digits_lt_crt", tmp_path / "crt", f"model.init={second.best_path}")
    with pytest.raises(ValueError, match="stage-1 model"):
        train(config)


def test_the_linear_head_of_an_lws_model_folds_in_its_scales():
    """ViM / ReAct (``fit(..., model=model)``) read the head of an LWS model with its scales."""
    from oltr.scores._linear_head import linear_head

    model = build_model(load_config("digits_lt_lws", ["device=cpu"]))
    with torch.no_grad():
        model.classifier.scales.copy_(torch.linspace(0.5, 2.0, 6))
    weight, bias = linear_head(model)
    x = torch.randn(3, model.feat_dim)
    expected = model.classifier(x)[0].detach().double().numpy()
    np.testing.assert_allclose(x.double().numpy() @ weight.T + bias, expected, rtol=1e-5, atol=1e-6)


def test_classifier_stage_resume_equals_uninterrupted(tmp_path, stage1, monkeypatch):
    """A killed cRT run (cosine schedule, class-aware sampler, frozen backbone) resumes exactly."""
    from oltr.train import load_resume_state

    extra = (f"model.init={stage1.best_path}", "epochs=3")
    straight = train(_config("digits_lt_crt", tmp_path / "a", *extra))
    calls = {"n": 0}
    original = _Run.validate

    def dying_validate(self):
        calls["n"] += 1
        if calls["n"] == 2:  # killed in epoch 2, after its training steps
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(_Run, "validate", dying_validate)
    with pytest.raises(KeyboardInterrupt):
        train(_config("digits_lt_crt", tmp_path / "b", *extra))
    monkeypatch.setattr(_Run, "validate", original)
    resumed = train(_config("digits_lt_crt", tmp_path / "b", *extra), resume=True)
    assert resumed.epochs_run == 2
    a, b = load_resume_state(straight.out_dir / "last.pt"), load_resume_state(resumed.out_dir / "last.pt")
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert a["model_scheduler"] == b["model_scheduler"] and a["best"]["acc"] == b["best"]["acc"]


@pytest.mark.parametrize("name, epochs, batch, lr", [
    ("imagenet_lt_crt", 10, 512, 0.2), ("imagenet_lt_lws", 5, 512, 0.2),
    ("places_lt_crt", 10, 256, 0.1), ("places_lt_lws", 5, 256, 0.1),
])
def test_shipped_decoupling_recipes_state_the_authors_settings(name, epochs, batch, lr):
    """The values read from the authors' cls_crt.yaml / cls_lws.yaml (see each recipe's comment)."""
    config = load_config(name)
    assert config.stage == name.rsplit("_", 1)[1] and config.epochs == epochs and config.batch_size == batch
    assert config.optim.classifier_lr == lr and config.optim.momentum == 0.9 and config.optim.weight_decay == 5e-4
    assert (config.optim.schedule, config.optim.end_lr) == ("cosine", 0.0)
    assert (config.sampler.kind, config.sampler.samples_per_class) == ("class_aware", 4)
    assert config.loss.kind == "ce" and config.model.init.endswith("stage1/best.pt")
