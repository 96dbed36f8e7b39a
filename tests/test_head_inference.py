"""The meta-embedding head at inference: caches of weight-derived values (built once, rebuilt
when weights change, never used in training or under autograd), the extras it exposes, and the
one source of its defaults."""
from __future__ import annotations

import copy
import inspect
import pickle
import warnings

import pytest
import torch

import oltr.memory.index
import oltr.model
import oltr.nn
from oltr.memory.index import REACHABILITY_SCALE
from oltr.model import create_model
from oltr.nn import CosNormClassifier, MetaEmbeddingClassifier, _products

# float32: the cached path sums in another order than the formulas, so results differ by float32
# rounding -- up to ~3e-6 measured on logits bounded by 16 (1.5 ulp there); 8e-6 is 4 ulps at 16.
# test_float64_inference_equals_the_formulas_to_float64_precision checks the same code to 1e-12.
CLOSE = {"rtol": 1e-6, "atol": 8e-6}


def _head(num_classes=7, dim=16, seed=0, **kw):
    torch.manual_seed(seed)
    head = MetaEmbeddingClassifier(dim, num_classes, **kw)
    x = torch.randn(5, dim) * 2
    centroids = torch.randn(num_classes, dim) * 2
    return head, x, centroids


def _reference(head, x, centroids):
    """The head's output through the autograd formulas (eval mode, grad enabled: no cache)."""
    with torch.enable_grad():
        logits, extras = head(x, centroids)
    return logits.detach(), extras


def _cached(head, x, centroids):
    with torch.no_grad():
        return head(x, centroids)


def _builds(head):
    """How many values were built from the cosine weight (its normalised copy: the torch path's,
    or the core path's transposed one) and from the centroids (the Rust index, and the torch
    path's transposed centroids)."""
    builds = head.cache_builds
    cosine = head.cosnorm_classifier
    return (cosine._unit_weight.builds + cosine._unit_weight_t.builds,
            builds["index"] + builds["centroids_t"])


@pytest.mark.parametrize("num_classes,dim,squash", [(7, 16, "code"), (300, 64, "code"), (50, 32, "paper")])
def test_inference_equals_the_uncached_formulas(num_classes, dim, squash):
    head, x, centroids = _head(num_classes, dim, squash=squash)
    head.eval()
    logits, extras = _cached(head, x, centroids)
    ref_logits, ref = _reference(head, x, centroids)
    torch.testing.assert_close(logits, ref_logits, **CLOSE)
    for name in ("memory", "selector", "infused", "meta_embedding", "reachability", "nearest_distance"):
        torch.testing.assert_close(getattr(extras, name), getattr(ref, name).detach(), **CLOSE, msg=name)
    assert torch.equal(extras.nearest, ref.nearest)
    exact = torch.cdist(x.double(), centroids.double()).min(dim=1)
    torch.testing.assert_close(extras.nearest_distance.double(), exact.values, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(extras.reachability, REACHABILITY_SCALE / extras.nearest_distance, **CLOSE)
    assert _builds(head) == (1, 1)


def test_float64_inference_equals_the_formulas_to_float64_precision():
    head, x, centroids = _head(40, 24)
    head = head.double().eval()
    x, centroids = x.double(), centroids.double()
    logits, _ = _cached(head, x, centroids)
    torch.testing.assert_close(logits, _reference(head, x, centroids)[0], rtol=1e-12, atol=1e-12)


def test_caches_are_built_once_across_batches():
    head, x, centroids = _head()
    head.eval()
    for start in range(3):
        _cached(head, x[start:start + 2], centroids)
    assert _builds(head) == (1, 1)
    assert head.cache_builds["index"] == head.nearest.builds <= 1  # 1 with the Rust index, 0 on the torch path


def test_the_memory_read_out_follows_the_centroids():
    head, x, centroids = _head()
    head.eval()
    _cached(head, x, centroids)
    _cached(head, x[:2], centroids)
    assert _builds(head) == (1, 1)
    with torch.no_grad():
        centroids.mul_(0.5).add_(0.3)  # in place: the version counter moves
    for memory in (centroids, centroids.clone() * -1.0, centroids.double().float()):
        logits, extras = _cached(head, x, memory)
        ref_logits, ref = _reference(head, x, memory)
        torch.testing.assert_close(extras.memory, ref.memory.detach(), **CLOSE)
        torch.testing.assert_close(logits, ref_logits, **CLOSE)
    assert _builds(head) == (1, 4)


@pytest.mark.parametrize("squash", ["code", "paper"])
def test_single_row_batches_equal_the_formulas_and_transposed_weights_are_built_once(squash):
    head, x, centroids = _head(300, 64, squash=squash)
    head.eval()
    # the core path: the hallucinator's, selector's and cosine weights transposed (every batch);
    # the torch path: the hallucinator's and cosine's (single rows)
    per_build = 3 if _products.available(x) else 2
    for i in range(3):
        logits, extras = _cached(head, x[i:i + 1], centroids)
        ref_logits, ref = _reference(head, x[i:i + 1], centroids)
        torch.testing.assert_close(logits, ref_logits, **CLOSE)
        torch.testing.assert_close(extras.memory, ref.memory.detach(), **CLOSE)
    assert head.cache_builds["weights_t"] == per_build
    _train_step(head, x, centroids)
    logits, _ = _cached(head, x[:1], centroids)
    torch.testing.assert_close(logits, _reference(head, x[:1], centroids)[0], **CLOSE)
    assert head.cache_builds["weights_t"] == 2 * per_build
    head.clear_caches()
    assert head.cache_builds["weights_t"] == 0


def _train_step(head, x, centroids, lr=0.5):
    head.train()
    optimizer = torch.optim.SGD(head.parameters(), lr=lr)
    logits, _ = head(x, centroids)
    torch.nn.functional.cross_entropy(logits, torch.arange(x.shape[0]) % head.num_classes).backward()
    optimizer.step()
    head.eval()


def _edit_load_state_dict(head):
    other = MetaEmbeddingClassifier(head.feat_dim, head.num_classes)
    head.load_state_dict(other.state_dict())


def _edit_in_place(head):
    with torch.no_grad():
        for p in head.parameters():
            p.mul_(1.5).add_(0.01)


def _edit_data_swap(head):
    for p in head.parameters():
        p.data = p.data * -1.0 + 0.02


def _edit_assign(head):
    other = MetaEmbeddingClassifier(head.feat_dim, head.num_classes)
    head.load_state_dict(other.state_dict(), assign=True)


@pytest.mark.parametrize("edit", ["optimizer_step", "load_state_dict", "in_place", "data_swap", "assign"])
def test_every_cache_follows_a_weight_change(edit):
    head, x, centroids = _head()
    head.eval()
    before, _ = _cached(head, x, centroids)
    if edit == "optimizer_step":
        _train_step(head, x, centroids)
    else:
        {"load_state_dict": _edit_load_state_dict, "in_place": _edit_in_place,
         "data_swap": _edit_data_swap, "assign": _edit_assign}[edit](head)
    after, _ = _cached(head, x, centroids)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _reference(head, x, centroids)[0], **CLOSE)
    assert _builds(head) == (2, 1)


@pytest.mark.parametrize("convert", ["double", "to_float64", "half_and_back"])
def test_dtype_changes_rebuild_the_caches(convert):
    head, x, centroids = _head()
    head.eval()
    _cached(head, x, centroids)
    if convert == "double":
        head.double()
        x, centroids = x.double(), centroids.double()
    elif convert == "to_float64":
        head.to(torch.float64)
        x, centroids = x.double(), centroids.double()
    else:
        head.half().float()  # back to float32, values rounded through float16
    logits, _ = _cached(head, x, centroids)
    assert logits.dtype == x.dtype
    torch.testing.assert_close(logits, _reference(head, x, centroids)[0], **CLOSE)
    assert _builds(head) == (2, 1 if convert == "half_and_back" else 2)  # new float64 centroids


def test_writes_through_data_need_clear_caches():
    head, x, centroids = _head()
    head.eval()
    _cached(head, x, centroids)
    head.cosnorm_classifier.weight.data.mul_(-1.0)  # bypasses the version counter: not seen
    stale, _ = _cached(head, x, centroids)
    assert not torch.allclose(stale, _reference(head, x, centroids)[0])
    head.clear_caches()
    fresh, _ = _cached(head, x, centroids)
    torch.testing.assert_close(fresh, _reference(head, x, centroids)[0], **CLOSE)


def test_training_and_autograd_never_use_the_caches():
    head, x, centroids = _head()
    twin = copy.deepcopy(head)
    head.eval()
    _cached(head, x, centroids)  # builds every cache
    with torch.no_grad():  # the caches now hold values that differ from the weights
        for p in head.parameters():
            p.data.mul_(0.5)
        for p in twin.parameters():
            p.mul_(0.5)
    for mode in ("train", "eval"):  # eval mode with grad enabled: autograd path too
        getattr(head, mode)()
        getattr(twin, mode)()
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        la, _ = head(xa, centroids)
        lb, _ = twin(xb, centroids)
        torch.testing.assert_close(la, lb, rtol=0, atol=0)
        la.square().sum().backward()
        lb.square().sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=0)
        for (name, pa), pb in zip(head.named_parameters(), twin.parameters()):
            torch.testing.assert_close(pa.grad, pb.grad, rtol=0, atol=0, msg=name)
            pa.grad, pb.grad = None, None
    assert _builds(twin) == (0, 0)


def test_no_grad_in_training_mode_takes_the_formulas():
    head, x, centroids = _head()
    head.train()
    with torch.no_grad():
        head(x, centroids)
    builds = head.cache_builds  # (the Rust index answers the nearest centroid whenever no gradient is needed)
    assert (builds["unit_weight"], builds["centroids_t"], builds["weights_t"]) == (0, 0, 0)


def test_inference_mode_uses_the_caches():
    head, x, centroids = _head()
    head.eval()
    with torch.inference_mode():
        logits, _ = head(x, centroids)
        head(x, centroids)
    assert _builds(head) == (1, 1)
    torch.testing.assert_close(logits, _reference(head, x, centroids)[0], **CLOSE)


def test_a_model_made_under_inference_mode_is_not_cached_but_correct():
    with torch.inference_mode():
        head, x, centroids = _head()
        head.eval()
        logits, _ = head(x, centroids)
        logits2, _ = head(x, centroids)
    # weight-derived values are rebuilt on every call; the index is kept by comparing values
    assert _builds(head)[0] == 0 and head.cache_builds["centroids_t"] == 0 and torch.equal(logits, logits2)


def test_copies_and_pickles_start_with_empty_caches():
    head, x, centroids = _head()
    head.eval()
    expected, _ = _cached(head, x, centroids)
    for clone in (copy.deepcopy(head), pickle.loads(pickle.dumps(head))):
        assert _builds(clone) == (0, 0)
        torch.testing.assert_close(_cached(clone, x, centroids)[0], expected, rtol=0, atol=0)
        assert _builds(clone) == (1, 1)


def test_model_level_inference_and_extras():
    torch.manual_seed(0)
    model = create_model("cnn8", 4, "oltr").eval()
    model.set_memory(torch.randn(4, 64).abs())
    images = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        logits, extras = model(images)
        model(images)
    with torch.enable_grad():
        ref_logits, ref = model(images)
    torch.testing.assert_close(logits, ref_logits.detach(), **CLOSE)
    torch.testing.assert_close(extras.nearest_distance, ref.nearest_distance.detach(), **CLOSE)
    assert type(extras) is oltr.nn.Extras and extras.attention is not None
    assert _builds(model.classifier) == (1, 1)
    model.set_memory(torch.randn(4, 64).abs())  # the buffer changes in place: caches follow
    with torch.no_grad():
        logits, _ = model(images)
    with torch.enable_grad():
        torch.testing.assert_close(logits, model(images)[0].detach(), **CLOSE)
    assert _builds(model.classifier) == (1, 2)
    model.clear_caches()
    assert _builds(model.classifier) == (0, 0)


def test_one_extras_type():
    assert oltr.model.ModelExtras is oltr.nn.Extras
    assert oltr.nn.ClassifierExtras is oltr.nn.Extras and oltr.nn.MetaEmbeddingExtras is oltr.nn.Extras
    head, x, centroids = _head()
    _, extras = _cached(head.eval(), x, centroids)
    assert type(extras) is oltr.nn.Extras and extras.attention is None
    _, plain = oltr.nn.DotProductClassifier(16, 3)(x)
    assert type(plain) is oltr.nn.Extras and plain.reachability is None and plain.nearest_distance is None


# -- defaults and the logit_scale rename ------------------------------------------------------
def test_reach_scale_has_one_default():
    assert oltr.memory.index.REACHABILITY_SCALE == 10.0
    assert MetaEmbeddingClassifier(8, 3).reach_scale == REACHABILITY_SCALE
    assert create_model("cnn8", 3, "oltr").reach_scale == REACHABILITY_SCALE
    assert create_model("cnn8", 3, "oltr", reach_scale=4.0).reach_scale == 4.0
    assert create_model("cnn8", 3).reach_scale == REACHABILITY_SCALE  # plain stage: the default
    assert oltr.memory.REACHABILITY_SCALE is REACHABILITY_SCALE
    from oltr.scores import Reachability
    from oltr.scores.centroids import reachability_score

    assert Reachability().scale == REACHABILITY_SCALE
    for fn in (reachability_score, oltr.memory.reachability):
        assert inspect.signature(fn).parameters["scale"].default == REACHABILITY_SCALE


def test_logit_scale_is_the_cosine_scale():
    layer = CosNormClassifier(8, 3, logit_scale=4.0)
    assert layer.logit_scale == 4.0 and "logit_scale=4.0" in repr(layer)
    assert CosNormClassifier(8, 3).logit_scale == 16.0 == oltr.nn.cosnorm.LOGIT_SCALE
    assert set(layer.state_dict()) == {"weight"}
    x = torch.randn(6, 8) * 50
    assert float(layer(x).detach().abs().max()) < 4.0
    assert MetaEmbeddingClassifier(8, 3, logit_scale=2.0).logit_scale == 2.0
    assert create_model("cnn8", 3, "oltr", logit_scale=3.0).classifier.cosnorm_classifier.logit_scale == 3.0
    with pytest.raises(ValueError, match="logit_scale must be finite and > 0"):
        CosNormClassifier(8, 3, logit_scale=0.0)


@pytest.mark.parametrize("build", [
    lambda: CosNormClassifier(8, 3, scale=5.0).logit_scale,
    lambda: MetaEmbeddingClassifier(8, 3, scale=5.0).logit_scale,
    lambda: create_model("cnn8", 3, "oltr", scale=5.0).classifier.logit_scale,
    lambda: CosNormClassifier(8, 3, logit_scale=5.0).scale,
])
def test_the_old_scale_keyword_still_works_with_a_deprecation_warning(build):
    with pytest.warns(DeprecationWarning, match="logit_scale"):
        assert build() == 5.0


def test_giving_both_names_is_an_error():
    with pytest.raises(TypeError, match="give logit_scale only"):
        CosNormClassifier(8, 3, logit_scale=2.0, scale=2.0)


def test_no_oltr_code_path_uses_the_old_keyword():
    from oltr.train import load_config, shipped_configs
    from oltr.train.trainer import build_model

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in shipped_configs():
            config = load_config(name)
            if config["stage"] == "oltr" and config["model"]["backbone"] in ("cnn8", "cnn28"):
                build_model(config, 5)
        create_model("cnn8", 3, "oltr")
        MetaEmbeddingClassifier(8, 3)


@pytest.mark.parametrize("num_classes,dim,batch", [(7, 16, 5), (7, 16, 1), (1100, 512, 1), (1100, 512, 40)])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_features_are_forwards_extras_without_the_logits(num_classes, dim, batch, mode):
    """forward_features gives forward's Extras bit for bit, on every path (small heads on
    torch, wide ones on the BLAS tiles, single rows, training formulas), and computes no
    logits: the cosine layer's weight is never read (a NaN weight changes nothing)."""
    head, _, centroids = _head(num_classes, dim)
    x = torch.randn(batch, dim) * 2
    head.train(mode == "train")
    with torch.no_grad():
        _, extras = head(x, centroids)
        features = head.forward_features(x, centroids)
        head.cosnorm_classifier.weight.fill_(float("nan"))
        head.cosnorm_classifier.clear_cache()
        without_cosine = head.forward_features(x, centroids)
    for name in ("direct", "memory", "selector", "infused", "meta_embedding", "reachability", "nearest_distance",
                 "nearest"):
        assert torch.equal(getattr(features, name), getattr(extras, name)), name
        assert torch.equal(getattr(without_cosine, name), getattr(extras, name)), name
