"""OLTRModel.enroll / forget: what a new class is made of, exactness of the cached index edit,
state-dict round trips and input errors (the checkpoint and command side: test_enroll_e2e.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oltr.model import create_model
from oltr.nn.cosnorm import _normalise_rows


def _model(stage="oltr", k=5, seed=0):
    torch.manual_seed(seed)
    model = create_model("cnn28", k, stage).eval()
    with torch.no_grad():
        model.set_memory(torch.randn(k, model.feat_dim).abs())
    return model


def _cluster(model, n=6, seed=1, spread=0.05):
    """Features of a tight new class far from the random memory."""
    g = torch.Generator().manual_seed(seed)
    base = 4.0 * torch.rand(model.feat_dim, generator=g)
    return (base + spread * torch.randn(n, model.feat_dim, generator=g)).abs()


def _forward_features(model, features):
    with torch.no_grad():
        logits, extras = model.classifier(features, model.centroids) if model.stage == "oltr" \
            else model.classifier(features)
    return logits, extras


@pytest.mark.parametrize("stage", ["oltr", "plain"])
def test_enroll_appends_one_class_and_predicts_it_for_its_examples(stage):
    model = _model(stage)
    feats = _cluster(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    label = model.enroll(feats, "newcomer")
    assert label == 5 and model.num_classes == model.classifier.num_classes == 6
    assert model.class_names == ["class_0", "class_1", "class_2", "class_3", "class_4", "newcomer"]
    after = model.state_dict()
    assert set(after) == set(before)  # the same names, one more row each where K counts
    for key, value in before.items():
        if value.shape[:1] == (5,):
            assert after[key].shape[0] == 6 and torch.equal(after[key][:5], value), key
        else:
            assert torch.equal(after[key], value), key
    torch.testing.assert_close(model.centroids[5], feats.double().mean(0).float())
    logits, _ = _forward_features(model, feats)
    assert logits.shape == (6, 6)
    if stage == "oltr":  # the imprinted cosine row wins on its tight cluster
        assert (logits.argmax(1) == 5).all()
    else:  # an untrained fc: only the documented calibration holds (own-mean logit)
        fc = model.classifier.fc
        own = ((model.centroids[:5] * fc.weight.detach()[:5]).sum(1) + fc.bias.detach()[:5]).mean()
        torch.testing.assert_close(fc.weight.detach()[5] @ model.centroids[5] + fc.bias.detach()[5], own)
    # a state dict of the enlarged model loads into a model built for K = 6
    fresh = create_model("cnn28", 6, stage)
    fresh.load_state_dict(after)
    fresh.eval()
    torch.testing.assert_close(_forward_features(fresh, feats)[0], logits)


def test_imprinted_rows_are_the_documented_ones():
    model = _model("oltr")
    feats = _cluster(model)
    hall = model.classifier.fc_hallucinator
    old_w, old_b = hall.weight.detach().clone(), hall.bias.detach().clone()
    old_cos = model.classifier.cosnorm_classifier.weight.detach().clone()
    model.enroll(feats)
    mean = feats.double().mean(0).float()
    # hallucinator: mean row norm times the unit class mean; its logit at its own mean is the
    # average logit of the old classes at their own means (the memory)
    row = hall.weight[5].detach()
    torch.testing.assert_close(row, old_w.norm(dim=1).mean() * mean / mean.norm())
    old_own = ((model.centroids[:5] * old_w).sum(1) + old_b).mean()
    torch.testing.assert_close(row @ mean + hall.bias.detach()[5], old_own)
    # cosine classifier: the normalised mean of the normalised meta-embeddings (which the cosine
    # weights do not influence), scaled to the mean norm of the old rows
    _, extras = _forward_features(model, feats)
    direction = torch.nn.functional.normalize(extras.meta_embedding, dim=1).mean(0)
    cos_row = model.classifier.cosnorm_classifier.weight[5].detach()
    torch.testing.assert_close(_normalise_rows(cos_row[None])[0], direction / direction.norm())
    torch.testing.assert_close(cos_row.norm(), old_cos.norm(dim=1).mean())


def test_images_and_their_features_enroll_the_same_class():
    images = torch.rand(4, 1, 28, 28)
    a, b = _model(seed=3), _model(seed=3)
    with torch.no_grad():
        feats = a.features(images)
    a.enroll(images)
    b.enroll(feats.numpy())  # numpy features too
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, msg=name)
    assert a.training is False and all(not m.training for m in a.modules())


def test_the_cached_index_takes_an_edit_and_answers_as_a_rebuilt_one():
    model = _model(k=40)
    queries = torch.rand(32, model.feat_dim) * 4
    _forward_features(model, queries)  # builds the cached index
    nearest = model.classifier.nearest
    if nearest._index is None:
        pytest.skip("the Rust core is not available: nothing is cached")
    for seed in range(3):
        model.enroll(_cluster(model, seed=10 + seed))
    logits, extras = _forward_features(model, queries)
    assert nearest.builds == 1 and nearest._index._edits is not None  # edited, not rebuilt
    model.classifier.clear_caches()  # the reference: an index built on the final centroids
    logits2, extras2 = _forward_features(model, queries)
    assert nearest.builds == 1 and nearest._index._edits is None  # (clear() restarts the counter)
    assert torch.equal(extras.nearest, extras2.nearest)
    assert torch.equal(extras.nearest_distance, extras2.nearest_distance)
    assert torch.equal(logits, logits2)


def test_forget_undoes_enroll_and_shifts_later_labels():
    model = _model()
    queries = torch.rand(8, model.feat_dim)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    logits0, _ = _forward_features(model, queries)
    model.enroll(_cluster(model), "x")
    model.forget(5)
    assert model.num_classes == 5 and model.class_names == [f"class_{i}" for i in range(5)]
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert torch.equal(_forward_features(model, queries)[0], logits0)
    # forgetting a middle label: its rows go, later rows move down
    model.enroll(_cluster(model), "x")
    weight = model.classifier.cosnorm_classifier.weight.detach().clone()
    model.forget(1)
    assert model.class_names == ["class_0", "class_2", "class_3", "class_4", "x"]
    assert torch.equal(model.classifier.cosnorm_classifier.weight, weight[[0, 2, 3, 4, 5]])
    assert model.classifier.fc_hallucinator.out_features == model.classifier.cosnorm_classifier.out_dims == 5
    assert _forward_features(model, queries)[0].shape == (8, 5)


def test_plain_forget_and_enroll_keep_fc_in_step():
    model = _model("plain")
    model.enroll(_cluster(model))
    model.forget(0)
    assert model.classifier.fc.weight.shape == (5, model.feat_dim) and model.classifier.fc.bias.shape == (5,)
    assert model.centroids.shape == (5, model.feat_dim)


# ---------------------------------------------------------------------------- bad input
def test_enroll_errors_name_the_problem_and_change_nothing():
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    d = model.feat_dim
    cases = [
        (torch.zeros(3, d + 1), ValueError, f"feature dimension D={d + 1}, but the model's direct features have D={d}"),
        (torch.zeros(0, d), ValueError, "x is empty"),
        (torch.full((2, d), float("nan")), ValueError, "x contains NaN or Inf"),
        (torch.zeros(2, 1, 32, 32), ValueError, r"x: images of shape \(1, 32, 32\).*do not fit"),
        (torch.zeros(2, 3, 28, 28), ValueError, "do not fit the model's backbone"),
        (torch.zeros(2, d, dtype=torch.int64), TypeError, "x must be float"),
        (torch.zeros(d), ValueError, "x must be images"),
        ([[0.0] * d], TypeError, "x must be a tensor or numpy array"),
    ]
    for x, kind, message in cases:
        with pytest.raises(kind, match=message):
            model.enroll(x)
    with pytest.raises(ValueError, match="class_name must be a non-empty string"):
        model.enroll(torch.zeros(1, d), "  ")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert model.num_classes == 5


def test_forget_errors():
    model = _model(k=1)
    with pytest.raises(ValueError, match="label 3 is unknown: the model has labels 0..0"):
        model.forget(3)
    with pytest.raises(ValueError, match="label -1 is unknown"):
        model.forget(-1)
    with pytest.raises(TypeError, match="label must be an integer"):
        model.forget(True)
    with pytest.raises(TypeError, match="label must be an integer"):
        model.forget(0.0)
    with pytest.raises(ValueError, match="only class"):
        model.forget(0)
    assert np.int64(0) == 0 and model.num_classes == 1


def test_calibrated_imprint_matches_the_trained_rows_alignment():
    from oltr.model.enrollment import _meta_directions

    model = _model(k=6, seed=4)
    feats = _cluster(model)
    old_rows = torch.nn.functional.normalize(model.classifier.cosnorm_classifier.weight.detach().clone(), dim=1)
    old_meta = _meta_directions(model, model.centroids.clone())
    target = float((old_rows * old_meta).sum(1).mean())
    reference = _model(k=6, seed=4)
    model.enroll(feats, imprint="calibrated")
    reference.enroll(feats)  # the plain imprint: the normalised mean
    mean_dir = torch.nn.functional.normalize(reference.classifier.cosnorm_classifier.weight.detach()[6], dim=0)
    row = torch.nn.functional.normalize(model.classifier.cosnorm_classifier.weight.detach()[6], dim=0)
    assert float(row @ mean_dir) == pytest.approx(target, abs=1e-5)
    # the rest of the row points away from the old classes: less aligned with them than the mean row
    assert float((old_meta @ row).mean()) < float((old_meta @ mean_dir).mean())
    for name in ("centroids", "classifier.fc_hallucinator.weight", "classifier.fc_hallucinator.bias"):
        assert torch.equal(model.state_dict()[name], reference.state_dict()[name])
    with pytest.raises(ValueError, match="imprint must be one of"):
        model.enroll(feats, imprint="median")


def test_the_edited_index_is_reused_for_an_equal_copy_of_the_centroids():
    """After enroll, a different tensor with the same values (e.g. a state-dict copy) still
    finds the edited index by value; a changed appended row does not."""
    model = _model(k=30)
    queries = torch.rand(4, model.feat_dim) * 4
    _forward_features(model, queries)
    nearest = model.classifier.nearest
    if nearest._index is None:
        pytest.skip("the Rust core is not available: nothing is cached")
    model.enroll(_cluster(model))
    copy_ = model.centroids.clone()
    with torch.no_grad():
        model.classifier(queries, copy_)
    assert nearest.builds == 1 and nearest._index._edits is not None
    copy_[-1, 0] += 1.0
    with torch.no_grad():
        model.classifier(queries, copy_)
    assert nearest.builds == 2 and nearest._index._edits is None  # rebuilt on the changed values


def _batches(model):
    """A single-row and a multi-row batch: they read different caches (the transposed ones)."""
    g = torch.Generator().manual_seed(5)
    return [torch.rand(1, model.feat_dim, generator=g) * 4, torch.rand(9, model.feat_dim, generator=g) * 4]


def _wide_model(k: int, dim: int = 512):
    """A head as wide as the real ones (K x D products large enough for the BLAS tiles of
    the inference path), behind a small backbone."""
    from oltr.model import OLTRModel
    from oltr.nn import MetaEmbeddingClassifier
    from oltr.nn.small_cnn import cnn8_feature

    torch.manual_seed(0)
    feat = cnn8_feature(use_attention=False, use_fc_add=True, feat_dim=dim)
    model = OLTRModel(feat, MetaEmbeddingClassifier(dim, k)).eval()
    with torch.no_grad():
        model.set_memory(torch.randn(k, dim).abs())
    return model


@pytest.mark.parametrize("k, wide", [(12, False), (2100, True)])
def test_enroll_keeps_every_inference_cache_and_equals_a_rebuilt_model(k, wide):
    """Enrolling appends to the warm caches instead of dropping them (no rebuild on the next
    batch), over enough classes to outgrow the first room, and the enlarged model answers as
    a model built from its state dict does."""
    model = _wide_model(k) if wide else _model(k=k)
    for batch in _batches(model):
        _forward_features(model, batch)  # every cache warm
    builds = dict(model.classifier.cache_builds)
    # small: past the first buffer's room (K/4, at least 16); wide: the BLAS-tiled head path
    enrolled = 20 if wide else 40
    for seed in range(enrolled):
        model.enroll(_cluster(model, n=3, seed=100 + seed))
    outputs = [_forward_features(model, batch) for batch in _batches(model)]
    assert model.classifier.cache_builds == builds  # nothing was rebuilt
    if wide:
        fresh = _wide_model(k + enrolled)
    else:
        fresh = create_model("cnn28", k + enrolled, "oltr").eval()
    fresh.load_state_dict(model.state_dict())
    for batch, (logits, extras) in zip(_batches(model), outputs):
        ref_logits, ref_extras = _forward_features(fresh, batch)
        torch.testing.assert_close(logits, ref_logits, rtol=1e-6, atol=1e-6)
        assert torch.equal(extras.nearest, ref_extras.nearest)
        torch.testing.assert_close(extras.meta_embedding, ref_extras.meta_embedding, rtol=1e-6, atol=1e-6)
    # the grown caches hold what a rebuild computes
    classifier, cosnorm = model.classifier, model.classifier.cosnorm_classifier
    unit = _normalise_rows(cosnorm.weight.detach())
    expected = [(classifier._bank_t, model.centroids, model.centroids.t()),
                (classifier._hallucinator_t, classifier.fc_hallucinator.weight,
                 classifier.fc_hallucinator.weight.detach().t()),
                (cosnorm._unit_weight, cosnorm.weight, unit), (cosnorm._unit_weight_t, cosnorm.weight, unit.t())]
    kept = 0
    for cache, source, value in expected:  # each cache the batches above built
        if cache.builds:
            kept += 1
            torch.testing.assert_close(cache.peek(source), value, rtol=0, atol=1e-7)
    assert kept >= 2  # the class-indexed caches of the path that ran (core: two; torch: three)


def test_enrolled_state_dicts_hold_no_spare_room_and_keep_their_keys():
    model = _model(k=200)
    keys = list(model.state_dict())
    model.enroll(_cluster(model))
    state = model.state_dict()
    assert list(state) == keys
    live = dict(model.named_parameters())
    live.update(model.named_buffers())
    for name in ("centroids", "classifier.fc_hallucinator.weight", "classifier.fc_hallucinator.bias",
                 "classifier.cosnorm_classifier.weight"):
        assert live[name].untyped_storage().nbytes() > state[name].numel() * 4  # the model has room
        assert torch.equal(live[name], state[name])
        assert state[name].untyped_storage().nbytes() == state[name].numel() * 4, name
        assert state[name].shape[0] == 201


@pytest.mark.parametrize("stage", ["oltr", "plain"])
def test_imprint_statistics_follow_enrollments_and_in_place_changes(stage):
    """The sums the imprint rules average are updated per enrolled class and recomputed when a
    weight changed in place (an optimizer step): each enroll sees the statistics of the model
    as it is then."""
    from oltr.model._class_rows import ImprintStats, imprint_stats

    def recomputed(m):
        saved = m._imprint_stats
        m._imprint_stats = ImprintStats()
        try:
            return imprint_stats(m)
        finally:
            m._imprint_stats = saved

    model = _model(stage, k=20)
    for seed in range(3):
        model.enroll(_cluster(model, seed=30 + seed))
        kept, fresh = imprint_stats(model), recomputed(model)
        assert kept["count"] == fresh["count"] == 21 + seed and kept["memory"] == fresh["memory"]
        for key in ("hallucinator", "own", "cosine"):
            if fresh[key] is None:
                assert kept[key] is None
            else:
                assert kept[key] == pytest.approx(fresh[key], rel=1e-5), key
    layer = model.classifier.fc_hallucinator if stage == "oltr" else model.classifier.fc
    with torch.no_grad():
        layer.weight.mul_(3.0)
    assert imprint_stats(model)["hallucinator"] == pytest.approx(recomputed(model)["hallucinator"], rel=1e-6)
    label = model.enroll(_cluster(model, seed=40))
    mean_norm = float(layer.weight.detach()[:label].norm(dim=1).mean())
    assert float(layer.weight.detach()[label].norm()) == pytest.approx(mean_norm, rel=1e-5)


def test_reserve_classes_makes_enrolls_append_in_place_and_changes_nothing_else():
    from oltr.nn._growable import has_room

    model = _model(k=30)
    for batch in _batches(model):
        _forward_features(model, batch)
    before = [_forward_features(model, batch)[0] for batch in _batches(model)]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    builds = dict(model.classifier.cache_builds)
    from oltr.model._class_rows import _tensors, imprint_stats

    imprint_stats(model)
    model.reserve_classes(3)
    assert model.classifier.cache_builds == builds
    assert model._imprint_stats.get(_tensors(model)) is not None  # kept for the new tensors
    nearest = model.classifier.nearest
    assert nearest._index is None or nearest._source() is model.centroids  # re-pointed, not compared
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in state.items())
    assert all(torch.equal(a, _forward_features(model, b)[0]) for a, b in zip(before, _batches(model)))
    tensors = [model.centroids, model.classifier.fc_hallucinator.weight, model.classifier.fc_hallucinator.bias,
               model.classifier.cosnorm_classifier.weight]
    assert all(has_room(t, 3) and not has_room(t, 4) for t in tensors)
    storages = [t.untyped_storage().data_ptr() for t in tensors]
    for seed in range(3):
        model.enroll(_cluster(model, seed=60 + seed))
    tensors = [model.centroids, model.classifier.fc_hallucinator.weight, model.classifier.fc_hallucinator.bias,
               model.classifier.cosnorm_classifier.weight]
    assert [t.untyped_storage().data_ptr() for t in tensors] == storages  # appended in place
    assert model.classifier.cache_builds == builds
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="extra"):
            model.reserve_classes(bad)
