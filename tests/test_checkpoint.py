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


# -- integrity: every zip record's CRC-32 is checked before loading ------------------------

def _record_span(path, suffix="/data/0"):
    """(start, size) of the bytes of the archive record whose name ends with ``suffix``."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def _central_entry(path, suffix="/data/0"):
    """Offset of the central-directory entry of the record whose name ends with ``suffix``."""
    data = path.read_bytes()
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_len = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + name_len].decode().endswith(suffix):
            return at
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"no central entry for {suffix}")


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_changed_bytes_in_a_tensor_record_are_refused(tmp_path, where):
    from oltr.checkpoint import verify_archive

    path = tmp_path / "ok.pth"
    save_official(_trained_like("oltr"), path)
    assert verify_archive(path) is True
    read_official(path)
    start, size = _record_span(path)
    _flip(path, start + {"first": 0, "middle": size // 2, "last": size - 1}[where])
    # torch itself does not check the CRCs: the damaged file loads, with other numbers
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["state_dict_best"] is not None
    with pytest.raises(CheckpointError, match=r"ok\.pth: .*corrupt.*record '.*/data/0' does not match its CRC-32"):
        read_official(path)
    with pytest.raises(CheckpointError, match=r"ok\.pth"):
        load_official(path, backbone="cnn8")


@pytest.mark.parametrize("field", ["crc", "name", "size"])
def test_changed_bytes_in_the_central_directory_are_refused(tmp_path, field):
    path = tmp_path / "dir.pth"
    save_official(_trained_like("plain"), path)
    entry = _central_entry(path)
    _flip(path, entry + {"crc": 16, "name": 46 + 2, "size": 20}[field])
    with pytest.raises(CheckpointError, match=r"dir\.pth: not a readable PyTorch checkpoint"):
        read_official(path)


@pytest.mark.parametrize("keep", [0.99, 0.5, 0.02])
def test_truncated_zip_checkpoints_are_refused(tmp_path, keep):
    path = tmp_path / "cut.pth"
    save_official(_trained_like("plain"), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"cut\.pth: not a readable PyTorch checkpoint"):
        read_official(path)


def test_legacy_files_have_no_checksums_to_verify(tmp_path):
    from oltr.checkpoint import verify_archive

    path = save_official(_trained_like("plain"), tmp_path / "old.pth", legacy=True)
    assert verify_archive(path) is False  # nothing to check; structural damage is still caught above
    read_official(path)


# -- a failed write (full disk) is a clear error and loses nothing -------------------------

def _failing_writes():
    import errno

    def enforce_fail(obj, f, **kwargs):  # what torch's zip writer raises when the disk fills up
        f.write(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:671] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    def no_space(obj, f, **kwargs):
        f.write(b"\x80\x02partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    return [pytest.param(enforce_fail, "the write failed", id="enforce-fail"),
            pytest.param(no_space, "the disk is full", id="ENOSPC")]


@pytest.mark.parametrize("writer, cause", _failing_writes())
def test_full_disk_while_saving_an_official_checkpoint(tmp_path, monkeypatch, writer, cause):
    import oltr._io
    from oltr.checkpoint import CheckpointWriteError

    path = tmp_path / "final.pth"
    save_official(_trained_like("plain", seed=1), path)
    before = path.read_bytes()
    monkeypatch.setattr(oltr._io.torch, "save", writer)
    with pytest.raises(CheckpointWriteError, match=rf"cannot write checkpoint '.*final\.pth': {cause}") as err:
        save_official(_trained_like("plain", seed=2), tmp_path / "final.pth")
    assert isinstance(err.value, OSError)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.pth"]


# -- the official caffe ResNet-152 file (a flat state dict) as model.init ----------------

def _caffe_keys(model_keys):
    """The key names of the caffe ResNet-152 file: torchvision's ResNet names without a
    prefix, no ``num_batches_tracked``, plus the 1000-way ImageNet ``fc``."""
    keys = ["conv1.weight"] + [f"bn1.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
    for layer, blocks in zip((1, 2, 3, 4), (3, 8, 36, 3)):
        for b in range(blocks):
            for i in (1, 2, 3):
                keys.append(f"layer{layer}.{b}.conv{i}.weight")
                keys += [f"layer{layer}.{b}.bn{i}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
            if b == 0:
                keys.append(f"layer{layer}.0.downsample.0.weight")
                keys += [f"layer{layer}.0.downsample.1.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
    return keys + ["fc.weight", "fc.bias"]


def _write_caffe_file(path, model):
    """A flat state dict with the caffe file's keys and the model's shapes; tensor i holds the
    value i everywhere (stored as one element, expanded, so the file stays small)."""
    own = model.feat_model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in own.items()}
    shapes.update({"fc.weight": (1000, 2048), "fc.bias": (1000,)})
    flat = OrderedDict((k, torch.tensor(float(i)).expand(shapes[k])) for i, k in enumerate(_caffe_keys(own)))
    torch.save(flat, path)
    return flat


def test_places_stage1_recipe_loads_the_caffe_resnet152_file(tmp_path):
    from oltr.checkpoint import read_pretrained
    from oltr.train import load_config
    from oltr.train.trainer import _init_weights, build_model

    path = tmp_path / "caffe_resnet152.pth"
    config = load_config("places_lt_stage1", [f"model.init={path}"])
    torch.manual_seed(0)
    model = build_model(config)
    fresh = {k: v.clone() for k, v in model.feat_model.state_dict().items()}
    flat = _write_caffe_file(path, model)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(CheckpointError, match="no 'state_dict_best'"):
        read_official(path)  # not an OLTR checkpoint: read_official still says so
    ckpt = read_pretrained(path)
    assert list(ckpt.feat_model) == list(flat) and not ckpt.classifier and ckpt.centroids is None
    message = _init_weights(model, config)
    state = model.feat_model.state_dict()
    copied = [k for k in flat if k in state]
    assert len(copied) == len(flat) - 2  # every caffe key but the ImageNet fc
    assert message.startswith(f"{len(copied)} backbone tensors from {path}")
    for key in copied:
        assert torch.equal(state[key], flat[key].float()), key
    for key in ("fc_add.weight", "fc_add.bias", "bn1.num_batches_tracked"):  # not in the file: kept
        assert torch.equal(state[key], fresh[key]), key


def test_caffe_style_file_errors_name_the_problem(tmp_path):
    from oltr.checkpoint import read_pretrained
    from oltr.model.stage_init import init_backbone

    model = create_model("resnet10", 4)
    path = tmp_path / "flat.pth"
    state = {k: v.clone() for k, v in model.feat_model.state_dict().items()}
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)  # a 3x3 stem: not this backbone
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"feat_model key 'conv1.weight': source shape \(64, 3, 3, 3\)"):
        init_backbone(model, read_pretrained(path))
    # a DataParallel "module." prefix is removed (the official caffe loader would match no key and
    # silently keep the random init)
    torch.save({"module.layer1.0.conv1.weight": torch.full((64, 64, 3, 3), 3.0)}, path)
    assert init_backbone(model, read_pretrained(path)).copied == ["layer1.0.conv1.weight"]
    assert torch.equal(model.feat_model.state_dict()["layer1.0.conv1.weight"], torch.full((64, 64, 3, 3), 3.0))
    torch.save({"features.0.weight": torch.zeros(64, 3, 7, 7)}, path)  # another architecture's names
    with pytest.raises(ValueError, match=r"no backbone key of the source matches.*features\.0\.weight"):
        init_backbone(model, read_pretrained(path))
    torch.save({"weights": [1, 2]}, path)
    with pytest.raises(CheckpointError, match=r"flat\.pth: neither an official OLTR checkpoint"):
        read_pretrained(path)
    torch.save(_official_payload(_trained_like("plain")), path)  # an official file still reads as such
    assert read_pretrained(path).stage == "plain"
