"""The torch.distributed seam in one process: identities, environment checks, conversions.

The multi-process behaviour is tested in ``test_distributed.py`` (2 gloo ranks).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from oltr.nn import DiscCentroidsLoss
from oltr.train import distributed as seam
from oltr.train.ddp import wrap_model
from oltr.train.gather import gather_outputs
from oltr.train.inference import Outputs
from oltr.train.sync_batchnorm import GlobalBatchNorm, convert_batchnorm
from oltr.train.sync_centroid_loss import DistributedDiscCentroidsLoss


def test_helpers_are_identities_without_a_process_group():
    assert not seam.is_distributed()
    assert (seam.rank(), seam.world_size(), seam.is_main()) == (0, 1, True)
    t = torch.arange(3.0)
    assert seam.all_reduce_sum(t) is t and torch.equal(t, torch.arange(3.0))
    assert seam.all_gather_object({"a": 1}) == [{"a": 1}]
    assert seam.gather_object(5) == [5]
    assert seam.broadcast_object("x") == "x"
    p = nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    seam.average_gradients([p])
    assert torch.equal(p.grad, torch.full((2,), 3.0))
    seam.barrier()
    out = Outputs(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), np.zeros(2, np.int64))
    assert gather_outputs(out) is out
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    assert wrap_model(model, torch.device("cpu")) is model
    assert isinstance(model[1], nn.BatchNorm2d) and not isinstance(model[1], GlobalBatchNorm)


@pytest.mark.parametrize("value", [None, "1"])
def test_launched_is_a_no_op_for_one_process(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", value)
    with seam.launched("cpu"):
        assert not seam.is_distributed()
    assert not seam.is_distributed()


@pytest.mark.parametrize("value", ["two", "0", "-3"])
def test_launched_rejects_a_bad_world_size(monkeypatch, value):
    monkeypatch.setenv("WORLD_SIZE", value)
    with pytest.raises(ValueError, match="WORLD_SIZE must be a positive integer"):
        with seam.launched("cpu"):
            pass


def test_backend_follows_the_device(monkeypatch):
    assert seam.backend_for("cpu") == "gloo"
    assert seam.backend_for(torch.device("cpu")) == "gloo"
    expected = "nccl" if torch.distributed.is_nccl_available() else "gloo"
    assert seam.backend_for("cuda") == expected
    assert seam.backend_for(torch.device("cuda", 1)) == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert seam.backend_for("auto") == "gloo"


def test_convert_batchnorm_keeps_parameters_and_matches_batchnorm_in_one_process():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4),
                          nn.BatchNorm1d(4))
    with torch.no_grad():
        plain[1].weight.uniform_(0.5, 1.5)
        plain[1].bias.uniform_(-0.5, 0.5)
    converted = convert_batchnorm(_copy(plain), torch.device("cpu"))
    params = [id(p) for p in converted.parameters()]
    assert isinstance(converted[1], GlobalBatchNorm) and isinstance(converted[5], GlobalBatchNorm)
    assert [id(p) for p in converted.parameters()] == params  # same tensors: optimisers still hold them
    assert set(converted.state_dict()) == set(plain.state_dict())
    x = torch.randn(5, 1, 4, 4)
    for model in (plain, converted):
        model.train()
    assert torch.allclose(converted(x), plain(x), atol=1e-6)
    for key, value in plain.state_dict().items():
        assert torch.allclose(converted.state_dict()[key].double(), value.double(), atol=1e-6), key
    with pytest.raises(ValueError, match="expected an input of shape"):
        converted[1](torch.randn(3))
    bn = nn.BatchNorm2d(3)
    assert isinstance(convert_batchnorm(bn, torch.device("cpu")), GlobalBatchNorm)


def _copy(model):
    import copy

    return copy.deepcopy(model)


@pytest.mark.parametrize("mode", ["official", "autograd"])
def test_distributed_centroid_loss_is_the_loss_in_one_process(mode):
    torch.manual_seed(1)
    feat = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 1, 2, 0, 0])
    results = []
    for cls in (DiscCentroidsLoss, DistributedDiscCentroidsLoss):
        torch.manual_seed(2)
        loss = cls(3, 4, gradient=mode)
        f = feat.clone().requires_grad_(True)
        value = loss(f, labels)
        value.backward()
        results.append((value.detach(), f.grad, loss.centroids.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.fixture
def group_of_one():
    """A real gloo process group of world size 1 (the distributed code paths, one rank)."""
    import socket

    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("this torch build has no torch.distributed with gloo")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def test_global_batchnorm_formula_equals_batchnorm(group_of_one):
    assert seam.is_distributed() and seam.world_size() == 1
    torch.manual_seed(3)
    plain = nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-0.5, 0.5)
    synced = convert_batchnorm(_copy(plain), torch.device("cpu"))
    for step in range(3):
        x = (torch.randn(4, 3, 5, 5) * (step + 1) + step).requires_grad_(True)
        x2 = x.detach().clone().requires_grad_(True)
        upstream = torch.randn(4, 3, 5, 5)
        out_plain, out_synced = plain(x), synced(x2)
        assert torch.allclose(out_synced, out_plain, atol=1e-5)
        (out_plain * upstream).sum().backward()
        (out_synced * upstream).sum().backward()
        assert torch.allclose(x2.grad, x.grad, atol=1e-5)
    assert torch.allclose(synced.weight.grad, plain.weight.grad, atol=1e-4)
    assert torch.allclose(synced.bias.grad, plain.bias.grad, atol=1e-4)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.allclose(getattr(synced, key).double(), getattr(plain, key).double(), atol=1e-5), key
    synced.eval()
    plain.eval()
    x = torch.randn(2, 3, 5, 5)
    assert torch.allclose(synced(x), plain(x), atol=1e-5)


def test_reseed_for_epoch_depends_on_seed_epoch_and_rank(group_of_one, monkeypatch):
    def draw(seed, epoch):
        seam.reseed_for_epoch(seed, epoch)
        return torch.rand(4), np.random.rand(), __import__("random").random()

    first = draw(0, 1)
    assert all(torch.equal(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(first, draw(0, 1)))
    assert not torch.equal(first[0], draw(0, 2)[0])
    assert not torch.equal(first[0], draw(1, 1)[0])
    monkeypatch.setattr(seam, "rank", lambda: 1)
    assert not torch.equal(first[0], draw(0, 1)[0])


def test_reseed_for_epoch_leaves_one_process_alone():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    seam.reseed_for_epoch(0, 3)
    assert torch.equal(torch.get_rng_state(), state)


def test_run_shard_of_an_empty_share_gives_empty_outputs():
    from torch.utils.data import DataLoader, TensorDataset

    from oltr.data import ShardedSampler
    from oltr.model import create_model
    from oltr.train.gather import run_shard

    model = create_model("cnn8", 6, stage="plain")
    data = TensorDataset(torch.rand(3, 1, 8, 8), torch.zeros(3, dtype=torch.int64))
    share = ShardedSampler(data, shuffle=False, num_replicas=4, rank=3, pad=False)  # 3 items, rank 3: none
    empty = DataLoader(data, batch_size=2, sampler=share)
    out = run_shard(model, empty, torch.device("cpu"))
    assert out.logits.shape == (0, 6) and out.features.shape == (0, model.feat_dim) and out.labels.shape == (0,)
    full = DataLoader(data, batch_size=2)
    assert run_shard(model, full, torch.device("cpu")).logits.shape == (3, 6)
