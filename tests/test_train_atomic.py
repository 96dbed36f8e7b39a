"""Checkpoints are written atomically: a failure mid-write leaves the last good file."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import zipfile

import pytest
import torch

import oltr._io
from oltr.checkpoint import CheckpointWriteError
from oltr.train import CheckpointError, load_model_checkpoint, load_resume_state
from oltr.train.checkpoints import MODEL_FORMAT, RESUME_FORMAT, save_checkpoint


def _payload(value: float) -> dict:
    return {"format": MODEL_FORMAT, "config": {}, "class_names": ["a"], "train_class_counts": [1],
            "state_dict": {"w": torch.full((4,), value)}, "centroids": None, "epoch": 1,
            "best_acc": value, "thresholds": {}}


def test_failure_during_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run" / "best.pt"
    save_checkpoint(_payload(1.0), path)
    real_save = torch.save

    def dying_save(obj, f, **kwargs):
        real_save(obj, f, **kwargs)
        f.truncate(f.tell() // 2)  # half the bytes reached the disk, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(oltr._io.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_payload(2.0), path)
    monkeypatch.setattr(oltr._io.torch, "save", real_save)
    loaded = load_model_checkpoint(path)
    assert loaded["best_acc"] == 1.0 and torch.equal(loaded["state_dict"]["w"], torch.ones(4))
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temp file left behind
    save_checkpoint(_payload(3.0), path)
    assert load_model_checkpoint(path)["best_acc"] == 3.0


def test_truncated_or_foreign_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(_payload(1.0), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model_checkpoint(path)
    torch.save({"something": 1}, path)
    with pytest.raises(CheckpointError, match="not an oltr"):
        load_model_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_model_checkpoint(tmp_path / "missing.pt")


def _resume_payload(value: float) -> dict:
    return {"format": RESUME_FORMAT, "config": {}, "epoch": 1, "model": {"w": torch.full((64,), value)},
            "model_optimizer": {}, "model_scheduler": {}, "rng": {}, "best": {"acc": value}}


def _tensor_record_start(path) -> int:
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    header = path.read_bytes()[info.header_offset:info.header_offset + 30]
    return info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")


@pytest.mark.parametrize("kind", ["model", "resume"])
@pytest.mark.parametrize("offset", [0, 7, 255])
def test_changed_tensor_bytes_are_a_checkpoint_error(tmp_path, kind, offset):
    name, payload, load = (("best.pt", _payload(1.0), load_model_checkpoint) if kind == "model"
                           else ("last.pt", _resume_payload(1.0), load_resume_state))
    if kind == "model":
        payload["state_dict"]["w"] = torch.ones(64)
    path = save_checkpoint(payload, tmp_path / name)
    load(path)
    data = bytearray(path.read_bytes())
    data[_tensor_record_start(path) + offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{name}: not a readable PyTorch checkpoint \(corrupt\): record"):
        load(path)


def _disk_full(kind):
    def enforce_fail(obj, f, **kwargs):  # torch's zip writer on a full disk
        f.write(b"PK\x03\x04" + b"x" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:671] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    def enospc(obj, f, **kwargs):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    return {"enforce": enforce_fail, "enospc": enospc}[kind]


@pytest.mark.parametrize("kind, cause", [("enforce", "the write failed"), ("enospc", "the disk is full"),
                                         ("fsync", "the disk is full")])
@pytest.mark.parametrize("name", ["best.pt", "last.pt"])
def test_a_full_disk_is_a_clear_error_that_keeps_the_previous_checkpoint(tmp_path, monkeypatch, kind, cause, name):
    path = tmp_path / "run" / name
    save_checkpoint(_payload(1.0), path)
    if kind == "fsync":  # the data reached the page cache; the flush to disk fails
        def fsync(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(oltr._io.os, "fsync", fsync)
    else:
        monkeypatch.setattr(oltr._io.torch, "save", _disk_full(kind))
    with pytest.raises(CheckpointWriteError, match=rf"cannot write checkpoint '.*run/{name}': {cause}"):
        save_checkpoint(_payload(2.0), path)
    monkeypatch.undo()
    assert load_model_checkpoint(path)["best_acc"] == 1.0
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temp file left behind


_REAL_LIMIT = """
import resource, signal, sys, torch
from oltr.train.checkpoints import save_checkpoint
from oltr.checkpoint import CheckpointWriteError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    save_checkpoint({"format": "x", "w": torch.zeros(100_000)}, sys.argv[1])
except CheckpointWriteError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="RLIMIT_FSIZE is Linux's")
def test_a_real_failed_write_under_a_file_size_limit(tmp_path):
    """A process whose files may not grow past 200 kB: torch.save itself fails mid-write."""
    path = tmp_path / "best.pt"
    save_checkpoint(_payload(1.0), path)
    done = subprocess.run([sys.executable, "-c", _REAL_LIMIT, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stderr
    assert f"cannot write checkpoint {str(path)!r}" in done.stdout and "enforce fail" in done.stdout
    assert load_model_checkpoint(path)["best_acc"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_remove_stale_temps_removes_only_killed_writes(tmp_path):
    from oltr.train.checkpoints import remove_stale_temps

    save_checkpoint(_payload(1.0), tmp_path / "best.pt")
    stale = [tmp_path / ".best.pt.k2j4_x.tmp", tmp_path / ".last.pt.abc123.tmp"]
    for p in stale:
        p.write_bytes(b"PK\x03\x04half")
    keep = [tmp_path / ".other.pt.abc.tmp", tmp_path / "best.pt.tmp", tmp_path / ".best.pt.notes"]
    for p in keep:
        p.write_text("mine")
    (tmp_path / ".last.pt.dir.tmp").mkdir()  # not a file: left alone
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)
    assert remove_stale_temps(tmp_path) == []
    assert load_model_checkpoint(tmp_path / "best.pt")["best_acc"] == 1.0
