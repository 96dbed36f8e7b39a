"""Nearest-centroid dispatch of the meta-embedding classifier: Rust core at CPU inference,
torch when a gradient is needed; the Rust index is cached while the centroids do not change."""
from __future__ import annotations

import pytest
import torch

import oltr.memory
from oltr.nn import MetaEmbeddingClassifier, _nearest

_REAL_INDEX = oltr.memory.CentroidIndex


class _RecordingIndex:
    """Stands in for the Rust CentroidIndex (torch backend inside), counting its uses."""

    built: list = []
    searches = 0

    def __init__(self, centroids, backend="auto"):
        assert backend == "rust"
        _RecordingIndex.built.append(centroids.clone())
        self._inner = _REAL_INDEX(centroids.clone(), backend="torch")

    def search(self, x, k=1):
        _RecordingIndex.searches += 1
        return self._inner.search(x, k)


@pytest.fixture
def fake_rust(monkeypatch):
    _RecordingIndex.built, _RecordingIndex.searches = [], 0
    monkeypatch.setattr(_nearest, "_rust_available", True)
    monkeypatch.setattr(oltr.memory, "CentroidIndex", _RecordingIndex)
    return _RecordingIndex


def _layer_and_data(seed=0, num_classes=6, dim=8):
    torch.manual_seed(seed)
    layer = MetaEmbeddingClassifier(dim, num_classes)
    return layer, torch.randn(5, dim), torch.randn(num_classes, dim) * 3


def test_inference_uses_the_rust_index_and_training_the_torch_path(fake_rust):
    layer, x, centroids = _layer_and_data()
    layer.eval()
    with torch.no_grad():
        logits_rust, extras_rust = layer(x, centroids)
    assert fake_rust.searches == 1 and len(fake_rust.built) == 1
    layer.train()
    logits_torch, extras_torch = layer(x.requires_grad_(True), centroids)
    assert fake_rust.searches == 1  # a gradient is needed: torch path
    torch.testing.assert_close(logits_rust, logits_torch.detach())
    assert torch.equal(extras_rust.nearest, extras_torch.nearest)
    logits_torch.sum().backward()
    assert x.grad is not None


def test_the_index_is_cached_until_the_centroids_change(fake_rust):
    layer, x, _ = _layer_and_data()
    layer.eval()
    memory = torch.nn.Parameter(torch.randn(6, 8) * 3)
    with torch.no_grad():
        layer(x, memory)
        layer(x, memory)                       # same object, same version: no rebuild
        assert len(fake_rust.built) == 1
        layer(x, memory.data)                  # another object, equal values: no rebuild
        layer(x, memory.detach().clone())
        assert len(fake_rust.built) == 1
        memory.add_(1.0)                       # in-place update bumps the version
        first, _ = layer(x, memory)
        assert len(fake_rust.built) == 2
        torch.testing.assert_close(fake_rust.built[-1], memory.detach())
    optimizer = torch.optim.SGD([memory], lr=0.5)
    memory.grad = torch.ones_like(memory)
    optimizer.step()
    with torch.no_grad():
        second, _ = layer(x, memory.data)      # .data of an updated parameter: values differ, rebuilt
    assert len(fake_rust.built) == 3
    assert not torch.allclose(first, second)
    layer.nearest.clear()
    with torch.no_grad():
        layer(x, memory)
    assert len(fake_rust.built) == 4


def test_copies_and_pickles_drop_the_cached_index(fake_rust):
    import copy
    import pickle

    layer, x, centroids = _layer_and_data()
    layer.eval()
    with torch.no_grad():
        expected, _ = layer(x, centroids)
    assert layer.nearest.builds == 1
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert clone.nearest.builds == 0 and clone.nearest.backend == "auto"
        with torch.no_grad():
            torch.testing.assert_close(clone(x, centroids)[0], expected)


def test_threads_sharing_a_layer_get_answers_for_their_own_centroids(fake_rust):
    from concurrent.futures import ThreadPoolExecutor

    layer, x, _ = _layer_and_data()
    layer.eval()
    memories = [torch.randn(6, 8) * 3 for _ in range(3)]
    with torch.no_grad():
        expected = [layer.nearest.__class__("torch")(x, m)[1] for m in memories]

    def run(i):
        with torch.no_grad():
            return all(torch.equal(layer(x, memories[(i + j) % 3])[1].nearest, expected[(i + j) % 3])
                       for j in range(20))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, range(8)))


def test_backend_choice():
    layer, x, centroids = _layer_and_data()
    with pytest.raises(ValueError, match="backend must be one of"):
        MetaEmbeddingClassifier(8, 6, nearest_backend="faiss")
    torch_only = MetaEmbeddingClassifier(8, 6, nearest_backend="torch")
    with torch.no_grad():
        assert not torch_only.nearest.uses_rust(x, centroids)
    assert not layer.nearest.uses_rust(x.requires_grad_(True), centroids)


def test_rejects_centroids_of_the_wrong_shape():
    layer, x, centroids = _layer_and_data()
    with pytest.raises(ValueError, match=r"centroids must have shape \(6, 8\)"):
        layer(x, centroids[:5])
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8\)"):
        layer(x[:, :7], centroids)


def test_a_feature_on_a_centroid_gives_finite_logits():
    layer, x, centroids = _layer_and_data()
    x[0] = centroids[2]
    logits, extras = layer(x.requires_grad_(True), centroids)
    assert torch.isfinite(logits).all() and extras.nearest[0] == 2
    logits.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.skipif(not _nearest.rust_core_available(), reason="the oltr Rust core is not built")
def test_rust_core_and_torch_path_give_the_same_logits(golden):
    g = golden("meta_embedding")
    state = {k[len("param."):]: torch.as_tensor(v) for k, v in g.items() if k.startswith("param.")}
    results = {}
    for backend in ("rust", "torch"):
        layer = MetaEmbeddingClassifier(64, 12, nearest_backend=backend)
        layer.load_state_dict(state)
        layer.eval()
        with torch.no_grad():
            results[backend] = layer(torch.as_tensor(g["in.x"]), torch.as_tensor(g["in.centroids"]))
    assert results["rust"][0].shape == (8, 12)
    torch.testing.assert_close(results["rust"][0], results["torch"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results["rust"][0], torch.as_tensor(g["out.logits"]), atol=1e-4, rtol=1e-4)
    assert torch.equal(results["rust"][1].nearest, results["torch"][1].nearest)
    # the model-level path: a large random case too
    torch.manual_seed(1)
    layers = {b: MetaEmbeddingClassifier(32, 200, nearest_backend=b).eval() for b in ("rust", "torch")}
    layers["torch"].load_state_dict(layers["rust"].state_dict())
    x, centroids = torch.randn(300, 32), torch.randn(200, 32)
    with torch.no_grad():
        torch.testing.assert_close(layers["rust"](x, centroids)[0], layers["torch"](x, centroids)[0],
                                   atol=1e-4, rtol=1e-4)


def test_half_precision_features_under_autocast():
    layer, x, centroids = _layer_and_data()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, extras = layer(x.requires_grad_(True), centroids)
    assert torch.isfinite(logits.float()).all()
    reference, _ = layer(x, centroids)
    torch.testing.assert_close(logits.float(), reference, atol=0.2, rtol=0.05)
    logits.float().sum().backward()
    assert x.grad is not None
