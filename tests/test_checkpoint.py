"""Official checkpoints: read (zip, legacy, CUDA-saved), load, save, refusal and corruption."""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import pytest
import torch
import torch.serialization

from oltr._io import atomic_save
from oltr.checkpoint import CheckpointError, UnsafeCheckpointError, load_official, read_official, save_official
from oltr.model import create_model

SERIALIZATIONS = [pytest.param(False, id="zip"), pytest.param(True, id="legacy")]


def _trained_like(stage, seed=0):
    torch.manual_seed(seed)
    model = create_model("cnn8", 5, stage)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
        for name, buf in model.feat_model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
    if stage == "oltr":
        model.set_memory(torch.randn(5, 64))
    return model.eval()


def _official_payload(model, centroids_location=None):
    prefixed = lambda m: OrderedDict(("module." + k, v.clone()) for k, v in m.state_dict().items())  # noqa: E731
    return {"epoch": 60, "best_epoch": 42,
            "state_dict_best": {"feat_model": prefixed(model.feat_model), "classifier": prefixed(model.classifier)},
            "best_acc": 0.361, "centroids": model.centroids.clone() if model.stage == "oltr" else None}


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("legacy", SERIALIZATIONS)
@pytest.mark.parametrize("stage", ["plain", "oltr"])
def test_round_trip_through_the_official_layout(tmp_path, stage, legacy):
    model = _trained_like(stage)
    path = save_official(model, tmp_path / "final_model_checkpoint.pth", epoch=3, best_epoch=2, best_acc=0.5,
                         legacy=legacy)
    with open(path, "rb") as f:
        assert (f.read(2) == b"PK") != legacy  # zip archive vs legacy pickle stream
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"epoch", "best_epoch", "state_dict_best", "best_acc", "centroids"}
    assert all(k.startswith("module.") for part in raw["state_dict_best"].values() for k in part)
    ckpt = read_official(path)
    assert (ckpt.epoch, ckpt.best_epoch, ckpt.best_acc, ckpt.stage) == (3, 2, 0.5, stage)
    assert (ckpt.centroids is None) == (stage == "plain")
    loaded = load_official(path, backbone="cnn8")
    assert loaded.stage == stage and not loaded.training
    _same_state(loaded, model)
    images = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images)[0], model(images)[0])


@pytest.mark.parametrize("legacy", SERIALIZATIONS)
def test_reads_an_official_resnet10_stage2_file_with_cuda_storages(tmp_path, monkeypatch, legacy):
    torch.manual_seed(0)
    model = create_model("resnet10", 10, "oltr")
    model.set_memory(torch.randn(10, 512))
    path = tmp_path / "cuda.pth"
    # write every storage with location tag "cuda:0", as a file saved from GPU tensors
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    torch.save(_official_payload(model), path, _use_new_zipfile_serialization=not legacy)
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)  # what the official loader (no map_location) does
    loaded = load_official(path, backbone="resnet10")
    assert loaded.centroids.device.type == "cpu"
    assert loaded.feat_model.use_attention and loaded.feat_model.use_fc_add
    _same_state(loaded, model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_memory_saved_on_cuda_for_the_official_code(tmp_path):
    path = save_official(_trained_like("oltr"), tmp_path / "gpu.pth", memory_device="cuda")
    assert torch.load(path, weights_only=True)["centroids"].is_cuda
    assert read_official(path).centroids.device.type == "cpu"


def test_memory_device_is_checked(tmp_path):
    with pytest.raises(ValueError, match="memory_device must be"):
        save_official(_trained_like("oltr"), tmp_path / "x.pth", memory_device="gpu")


def test_load_detects_the_official_stage1_resnet10_layout(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet10", 6)
    path = tmp_path / "stage1.pth"
    torch.save(_official_payload(model), path)
    loaded = load_official(path)
    assert loaded.stage == "plain" and not loaded.feat_model.use_fc_add and not loaded.feat_model.use_attention
    _same_state(loaded, model)


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("legacy", SERIALIZATIONS)
def test_pickled_code_is_refused(tmp_path, legacy):
    path = tmp_path / "evil.pth"
    payload = _official_payload(_trained_like("plain"))
    payload["extra"] = _Payload()
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth: refused to load.*GLOBAL"):
        read_official(path)


@pytest.mark.parametrize("legacy", SERIALIZATIONS)
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_files_raise_a_clear_error_naming_the_path(tmp_path, legacy, damage):
    path = tmp_path / f"bad_{damage}.pth"
    save_official(_trained_like("oltr"), path, legacy=legacy)
    data = path.read_bytes()
    data = {"truncate": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage]
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=f"bad_{damage}.pth: not a readable PyTorch checkpoint"):
        read_official(path)


def test_not_an_official_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="no 'state_dict_best'"):
        read_official(path)
    with pytest.raises(FileNotFoundError):
        read_official(tmp_path / "missing.pth")
    # a stage-2 file without its memory, and weights that do not fit the backbone
    payload = _official_payload(_trained_like("oltr"))
    payload["centroids"] = None
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="without 'centroids'"):
        load_official(path, backbone="cnn8")
    torch.save(_official_payload(_trained_like("plain")), path)
    with pytest.raises(CheckpointError, match="does not fit backbone='resnet10'"):
        load_official(path, backbone="resnet10")


def test_atomic_save_leaves_no_partial_file(tmp_path):
    path = tmp_path / "model.pth"
    atomic_save({"a": torch.ones(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))

    class _Unpicklable:
        def __reduce__(self):
            raise pickle.PicklingError("cannot pickle")

    with pytest.raises(pickle.PicklingError):
        atomic_save({"a": _Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]  # no temp file left
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_save({}, tmp_path / "no_dir" / "x.pth")
